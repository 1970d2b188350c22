"""Warm starts: from imported ImageNet weights (the `weights=` config
argument) and resizer transfer between backbones."""

import importlib
import json
import shutil

import jax
import numpy as np
import pytest
import torch

from configs import common
from resizer import checkpoints, config_checks, import_weights, run_record
from resizer import train
from resizer.models import composite
from tests import helpers, torch_models
from tests.tiny_runs import final_params, run, tiny_config


def flat(tree):
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.fixture(name='imported', scope='module')
def fixture_imported(tmp_path_factory):
  """A torchvision-layout DenseNet (densenet_tiny's shape, 7 classes),
  imported."""
  tmp = tmp_path_factory.mktemp('imported')
  torch.save(torch_models.build('densenet_tiny', 7).state_dict(),
             tmp / 'densenet_tiny.pth')
  import_weights.import_weights('densenet_tiny', str(tmp / 'densenet_tiny.pth'),
                                str(tmp / 'weights'))
  return tmp / 'weights'


def densenet_config(arg='', **overrides):
  c = common.imagenet_config('resizer=learned,res=48,out=24' + arg,
                             'densenet_tiny')
  base = tiny_config(**overrides)
  base.model.update(name='densenet_tiny', convention=c.model.convention)
  base.init_from.update(c.init_from)
  return base


@pytest.mark.slow
def test_weights_argument_warm_starts_the_backbone_and_renews_the_head(
    tmp_path, imported):
  """1000 ImageNet classes (the mock) against 7 imported: every backbone
  tensor but the head comes from the file; the head keeps its own init."""
  weights = tmp_path / 'weights'
  shutil.copytree(imported, weights)
  c = densenet_config(f',weights={weights}', total_steps=1,
                      **{'optim.learning_rate': 1e-9})
  assert c.init_from.parts == 'backbone'
  assert c.model.convention == 'from_weights'  # Read by the trainer.
  run(c, tmp_path / 'run')
  recorded = json.loads((tmp_path / 'run' / 'config.json').read_text())
  assert recorded['model']['convention'] == 'torchvision'  # The file's.
  source = flat(checkpoints.load(str(imported))['params'])
  trained = flat(final_params(tmp_path / 'run')['params'])
  backbone = [k for k in source if k.startswith("['backbone']")]
  assert len(backbone) > 10
  for key in backbone:
    if "['head']" in key:
      assert source[key].shape != trained[key].shape
    else:
      np.testing.assert_allclose(trained[key], source[key], atol=1e-6,
                                 err_msg=key)
  # Resuming ignores init_from: the run goes on after its source is gone,
  # with the convention it recorded (the command, relaunched, says
  # 'from_weights' again).
  shutil.rmtree(weights)
  again = densenet_config(f',weights={weights}', total_steps=2,
                          **{'optim.learning_rate': 1e-9})
  assert again.model.convention == 'from_weights'
  assert run(again, tmp_path / 'run', allow_config_change=True)['steps'] == 2


@pytest.mark.parametrize('overrides, match', [
    ({'model.convention': 'keras'},
     r"config.model.convention='keras' does not match the weights imported "
     r"from .*densenet_tiny.pth.*convention 'torchvision'"),
    ({'model.name': 'resnet_tiny'},
     r"config.model.name='resnet_tiny' does not match .*name 'densenet_tiny'"),
    ({'init_from.parts': 'all'},
     r"config.init_from.parts='all' is invalid; .* holds imported "
     r"densenet_tiny weights only: expected 'backbone'"),
])
def test_warm_start_source_that_does_not_fit_fails_before_compiling(
    tmp_path, imported, overrides, match):
  c = densenet_config(f',weights={imported}')
  for key, value in overrides.items():
    block, name = key.split('.')
    c[block][name] = value
  with pytest.raises(config_checks.ConfigError, match=match):
    run(c, tmp_path)
  assert not (tmp_path / 'config.json').exists()


def test_weights_argument_names_a_directory_without_weights(tmp_path):
  c = common.imagenet_config(f'weights={tmp_path}', 'resnet50')  # Recorded.
  with pytest.raises(
      config_checks.ConfigError,
      match=rf"config.init_from.workdir={str(tmp_path)!r}, which has neither "
            r'imported.json .* nor config.json'):
    train.build(c, num_devices=8, num_processes=1)


@pytest.mark.slow
def test_resizer_transfers_to_another_backbone(trained_tiny_run, tmp_path):
  """A resizer trained with one backbone (resnet_tiny), fine-tuned with
  another: only the resizer's parameters and statistics come from the
  source run."""
  resnet_run, _ = trained_tiny_run
  source = checkpoints.load(str(resnet_run))
  target_config = tiny_config(**{'model.name': 'densenet_tiny'})
  target_config.init_from.update(workdir=str(resnet_run), parts='resizer')
  model_state = helpers.init_compiled(composite.build_model(target_config),
                                      np.zeros((1, 48, 48, 3), np.float32))

  warm = checkpoints.warm_start(model_state, source, 'resizer')

  for collection in ('params', 'batch_stats'):
    got, src = flat(warm[collection]), flat(source[collection])
    fresh = flat(model_state[collection])
    assert set(got) == set(fresh)
    for key in got:
      expected = src[key] if key.startswith("['resizer']") else fresh[key]
      np.testing.assert_array_equal(got[key], expected, err_msg=key)
  # And the trainer runs with it.
  config_checks.validate(target_config, num_devices=8, num_processes=1)
  run(target_config, tmp_path / 'densenet')
  assert final_params(tmp_path / 'densenet')['params']['backbone'].keys() == (
      model_state['params']['backbone'].keys())



@pytest.mark.parametrize('name', [
    'imagenet_resnet50', 'imagenet_densenet', 'imagenet_mobilenetv2',
    'imagenet_inceptionv2', 'ava_densenet', 'ava_efficientnet',
    'ava_inceptionv2', 'cats_vs_dogs_densenet', 'imagenette_resnet50',
    'tfds_classification'])
def test_every_config_takes_weights_and_their_convention(name, tmp_path):
  (tmp_path / 'imported.json').write_text(
      '{"model": {"name": "resnet50", "convention": "keras"}}')
  module = importlib.import_module(f'configs.{name}')
  c = module.get_config(f'weights={tmp_path}')
  assert c.init_from.workdir == str(tmp_path)
  assert c.init_from.parts == 'backbone'
  assert c.model.convention == 'from_weights'
  run_record.resolve_convention(c)  # What the trainer and tools do.
  assert c.model.convention == 'keras'
  assert module.get_config().init_from.workdir == ''
  # The config itself reads nothing: any path parses.
  assert module.get_config('weights=/no/such/dir').init_from.workdir == (
      '/no/such/dir')

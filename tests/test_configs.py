"""Every experiment config loads, validates and builds; each ImageNet config
trains one step under mock data at a reduced size."""

import glob
import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import flags
from ml_collections import config_flags

from configs import common
from resizer import config_checks, input_pipeline, train
from resizer.models import composite

CONFIG_DIR = os.path.join(os.path.dirname(__file__), '..', 'configs')
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(
    os.path.join(CONFIG_DIR, '*.py')) if not p.endswith(('__init__.py', 'common.py')))
IMAGENET = [c for c in CONFIGS if c.startswith('imagenet_')]


def load(name, arg=None):
  return importlib.import_module(f'configs.{name}').get_config(arg)


@pytest.mark.parametrize('name', CONFIGS)
def test_config_validates_and_documents_its_command(name):
  config = load(name)
  train.build(config, num_devices=8, num_processes=1)
  doc = importlib.import_module(f'configs.{name}').__doc__
  assert f'--config=configs/{name}.py' in doc


def test_config_checks_build_nothing(monkeypatch):
  """Models are built once, by the trainer (train.build); config_checks only
  looks at values that span blocks."""
  def refuse(*args, **kwargs):
    raise AssertionError('config_checks built a model')
  monkeypatch.setattr(composite, 'build_model', refuse)
  monkeypatch.setattr(composite, 'build_resizer', refuse)
  config_checks.validate(load('imagenet_resnet50'), num_devices=8,
                         num_processes=1)


@pytest.mark.parametrize('name', IMAGENET)
def test_a_bad_model_value_is_a_config_error_naming_it(name):
  config = load(name)
  config.model.remat = 'everything'
  with pytest.raises(config_checks.ConfigError,
                     match="config.model.remat='everything' is invalid"):
    train.build(config, num_devices=8, num_processes=1)


@pytest.mark.parametrize('name', IMAGENET)
@pytest.mark.parametrize('resizer', ['learned', 'bilinear', 'muller', 'none'])
def test_imagenet_config_resizer_choices(name, resizer):
  config = load(name, f'resizer={resizer},res=320')
  train.build(config, num_devices=8, num_processes=1)
  expected = 224 if resizer == 'none' else 320
  assert config.resizer.in_size == expected and config.resizer.out_size == 224


@pytest.mark.slow
@pytest.mark.parametrize('name', IMAGENET)
def test_imagenet_model_trains_abstractly_at_full_depth(name):
  """The real backbone's training forward and backward, traced (not compiled)."""
  config = load(name, 'res=64,out=48')
  model = composite.build_model(config)
  images = jnp.zeros((2, 64, 64, 3), jnp.uint8)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images,
                                                train=False))

  def grads(variables):
    def loss(params):
      logits, _ = model.apply({**variables, 'params': params}, images,
                              train=True, mutable=['batch_stats'],
                              rngs={'dropout': jax.random.key(1)})
      return logits.sum()
    return jax.grad(loss)(variables['params'])

  grads = jax.eval_shape(grads, variables)
  assert jax.tree.structure(grads) == jax.tree.structure(variables['params'])


@pytest.mark.slow
def test_imagenet_config_runs_one_step_under_mock_data(tmp_path):
  """The ImageNet configs differ only in their backbone, swapped here for a
  tiny sibling: one run covers them. MobileNetV2's is the one no other
  training run uses (resnet_tiny: most of them; densenet_tiny:
  test_warm_start), and it has dropout."""
  config = load('imagenet_mobilenetv2', 'res=48,out=24')
  config.model.update(name='mobilenet_v2_tiny', dtype='float32')
  config.input.update(batch_size=8, eval_batch_size=8, shuffle_buffer=8)
  config.update(total_steps=1, image_summary_every_steps=1,
                async_checkpoints=False)
  with tfds.testing.mock_data(num_examples=8):
    results = train.train_and_evaluate(config, str(tmp_path))
  assert results['steps'] == 1 and results['eval']['num_examples'] == 8


@pytest.mark.parametrize('arg, match', [
    ('resizer=magic', "resizer='magic'.*bicubic"),
    ('res=big', r"res='big' must be a size: N \(square\) or HxW"),
    ('colour=red', "'colour=red'.*expected key=value"),
])
def test_bad_config_argument_names_itself(arg, match):
  with pytest.raises(ValueError, match=match):
    load('imagenet_densenet', arg)


# ------------------------------------------------- options that do what they say

def test_non_square_sizes_from_the_config_argument():
  config = common.imagenet_config('res=448x336,out=224x168', 'resnet50')
  assert composite.as_size(config.resizer.in_size, 'in') == (448, 336)
  assert composite.as_size(config.resizer.out_size, 'out') == (224, 168)
  model = composite.build_model(config)
  logits = jax.eval_shape(
      lambda x: model.init_with_output(jax.random.key(0), x, train=False)[0],
      jnp.zeros((1, 448, 336, 3), jnp.uint8))
  assert logits.shape == (1, 1000)


# ml_collections' config_flags loads the config file through importlib's
# deprecated load_module(); resizer.main's own parse warns the same.
@pytest.mark.filterwarnings('ignore:the load_module:DeprecationWarning')
@pytest.mark.parametrize('in_size, out_size', [
    ('64x48', '32x24'), ('(64, 48)', '[32, 24]'), ('64,48', '32,24')])
def test_non_square_sizes_from_command_line_flags(in_size, out_size):
  """As resizer.main's --config flag parses them (a training run with them:
  tests/test_demo_cli.py)."""
  argv = ['main', f'--config={CONFIG_DIR}/demo.py',
          f'--config.resizer.in_size={in_size}',
          f'--config.resizer.out_size={out_size}']
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, '', flag_values,
                                  lock_config=True, sys_argv=argv)
  flag_values(argv)
  assert composite.sizes(flag_values.config.resizer) == ((64, 48), (32, 24))


def test_antialias_with_resizer_none_acts_on_the_pipeline():
  """The pipeline does the only resize, so that is where antialias goes:
  its output changes (a grating finer than the target pixel)."""
  config = common.imagenet_config('resizer=none,antialias=true', 'resnet50')
  assert config.input.antialias and not config.resizer.antialias
  plain = common.imagenet_config('resizer=none', 'resnet50')
  assert not plain.input.antialias
  x = np.arange(256)
  grating = (127.5 + 127 * np.sin(2.6 * x))[None, :, None] * np.ones((256, 1, 3))
  encoded = tf.io.encode_png(grating.astype(np.uint8))
  images = [input_pipeline.eval_image(encoded, c.input, (32, 32)).numpy()
            for c in (config, plain)]
  assert np.abs(images[0].astype(int) - images[1]).max() > 10


@pytest.mark.parametrize('edit, match', [
    (dict(kind='none', in_size=224), "antialias=True does nothing with "
     r"config.resizer \(kind='none'\) \(the input pipeline resizes"),
    (dict(kind='fixed', interpolation='nearest'),
     "antialias=True does nothing with .* interpolation='nearest'"),
])
def test_antialias_that_would_change_nothing_is_refused(edit, match):
  config = common.imagenet_config('res=448', 'resnet50')
  config.resizer.update(antialias=True, **edit)
  with pytest.raises(config_checks.ConfigError, match=match):
    config_checks.validate(config, 1, 1)


def test_float16_is_refused_pointing_to_bfloat16():
  config = common.imagenet_config(None, 'resnet50')
  config.model.dtype = 'float16'
  with pytest.raises(config_checks.ConfigError,
                     match=r"model.dtype='float16'.*'bfloat16'.*loss scaling"):
    train.build(config, 1, 1)

"""`resizer.export`: a trained run's SavedModels, reloaded in TensorFlow,
reproduce the JAX outputs at any batch size."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from resizer import checkpoints, export, run_record
from resizer.models import composite
from tests.tiny_runs import copy_run, run, tiny_config

IN_SIZE = 48  # tiny_config: learned resizer 48 → 24, resnet_tiny.


@pytest.fixture(name='exported', scope='module')
def fixture_exported(tmp_path_factory, trained_tiny_run):
  tmp = tmp_path_factory.mktemp('export')
  copy_run(trained_tiny_run[0], tmp / 'run')
  description = export.export(str(tmp / 'run'), str(tmp / 'out'))
  return tmp, description


def jax_outputs(workdir, images):
  config, variables, _ = run_record.load_run(str(workdir))
  model = composite.build_model(config)
  resized = model.apply(variables, images, train=False, method=model.resize)
  return np.asarray(resized), np.asarray(model.apply(variables, images,
                                                     train=False))


def images(batch, seed=0):
  return np.random.default_rng(seed).integers(
      0, 256, (batch, IN_SIZE, IN_SIZE, 3), dtype=np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize('batch', [1, 5])
def test_saved_models_reproduce_jax_outputs(exported, batch):
  tmp, _ = exported
  x = images(batch)
  want_resized, want_logits = jax_outputs(tmp / 'run', x)
  resizer = tf.saved_model.load(str(tmp / 'out' / 'resizer'))
  model = tf.saved_model.load(str(tmp / 'out' / 'model'))

  resized = resizer.signatures['serving_default'](images=x)['resized'].numpy()
  logits = model.signatures['serving_default'](images=x)['logits'].numpy()

  assert resized.shape == (batch, 24, 24, 3) and logits.shape == (batch, 1000)
  np.testing.assert_allclose(resized, want_resized, atol=1e-5)
  np.testing.assert_allclose(logits, want_logits, atol=1e-4)


@pytest.mark.slow
def test_export_json_describes_the_export(exported):
  tmp, description = exported
  assert json.loads((tmp / 'out' / 'export.json').read_text()) == description
  assert description['step'] == 4
  assert description['in_size'] == [48, 48]
  assert description['out_size'] == [24, 24]
  assert description['num_classes'] == 1000


@pytest.mark.slow
def test_example_script_resizes_an_image_file_with_tensorflow_only(exported):
  tmp, _ = exported
  photo = np.random.default_rng(3).integers(0, 256, (60, 80, 3), np.uint8)
  tf.io.write_file(str(tmp / 'photo.png'), tf.io.encode_png(photo))
  subprocess.run([sys.executable, 'examples/resize_image.py',
                  f'--model={tmp / "out" / "resizer"}',
                  f'--image={tmp / "photo.png"}', f'--out={tmp / "small.png"}'],
                 check=True, capture_output=True)
  small = tf.io.decode_png(tf.io.read_file(str(tmp / 'small.png'))).numpy()
  # What the script computes, through JAX: resize to the input size, then
  # the learned resizer.
  pre = tf.image.resize(photo, (IN_SIZE, IN_SIZE), antialias=True)
  pre = np.clip(np.round(pre.numpy()), 0, 255).astype(np.uint8)
  want, _ = jax_outputs(tmp / 'run', pre[None])
  want = np.round(np.clip(want[0], 0, 1) * 255)
  assert small.shape == (24, 24, 3)
  assert np.abs(small.astype(np.float32) - want).max() <= 1


@pytest.mark.slow
def test_command_line_refuses_an_existing_directory_in_one_line(exported):
  """(The command line's exports: tests/test_gcs.py, tests/test_topology.py.)"""
  tmp, _ = exported
  before = (tmp / 'out' / 'export.json').read_text()
  failed = subprocess.run(
      [sys.executable, '-m', 'resizer.export', f'--workdir={tmp / "run"}',
       f'--out={tmp / "out"}', '--platforms=cpu'],
      capture_output=True, text=True)
  assert failed.returncode == 1
  assert 'already exists' in failed.stderr.strip().splitlines()[-1]
  assert (tmp / 'out' / 'export.json').read_text() == before


@pytest.mark.slow  # Its fixture trains and exports a run.
def test_existing_output_is_never_overwritten(exported):
  tmp, _ = exported
  before = (tmp / 'out' / 'export.json').read_text()
  with pytest.raises(FileExistsError, match='already exists'):
    export.export(str(tmp / 'run'), str(tmp / 'out'))
  assert (tmp / 'out' / 'export.json').read_text() == before


def test_missing_run_fails_naming_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='config.json is missing'):
    export.export(str(tmp_path), str(tmp_path / 'out'))


@pytest.mark.slow
def test_ema_weights_are_exported_on_request(tmp_path, exported):
  run(tiny_config(total_steps=2, ema_decay=0.5), tmp_path / 'run')
  description = export.export(str(tmp_path / 'run'), str(tmp_path / 'out'),
                              platforms=['cpu'], ema=True)
  assert description['weights'] == 'ema'
  state = checkpoints.load(str(tmp_path / 'run'))
  x = images(2)
  config, variables, _ = run_record.load_run(str(tmp_path / 'run'))
  model = composite.build_model(config)
  ema_logits = model.apply({**variables, 'params': state['ema_params']}, x,
                           train=False)
  own_logits = model.apply(variables, x, train=False)
  exported_model = tf.saved_model.load(str(tmp_path / 'out' / 'model'))
  logits = exported_model.signatures['serving_default'](images=x)['logits']
  np.testing.assert_allclose(logits.numpy(), ema_logits, atol=1e-4)
  assert np.abs(np.asarray(ema_logits) - np.asarray(own_logits)).max() > 1e-3
  # A run without an average says so instead of exporting something else.
  without, _ = exported
  with pytest.raises(ValueError, match='kept no EMA weights'):
    export.export(str(without / 'run'), str(tmp_path / 'none'), ema=True)

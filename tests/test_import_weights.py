"""`resizer.import_weights`: Keras applications and torchvision weights, once
imported, give our backbones the source model's logits.

The sources are built here with random weights (Keras with weights=None,
torchvision's layouts written out in tests/torch_models.py), with random
BatchNorm statistics and affine parameters so that every tensor matters.
Each test feeds uint8 images through the source framework's own
preprocessing and through our composite model (identity resizer), so input
normalisation and channel order are checked too.
"""

import json
import os
import subprocess
import sys

import h5py
import jax
import numpy as np
import pytest
import torch

from configs import common
from resizer import checkpoints, import_weights
from resizer.models import composite
from tests import torch_models

SIZE = 64
NUM_CLASSES = 7


def images(seed=0):
  return np.random.default_rng(seed).integers(0, 256, (2, SIZE, SIZE, 3),
                                              dtype=np.uint8)


def our_logits(out_dir, name, convention, x):
  """Logits of our composite model (no resizing) warm-started from `out_dir`."""
  state = checkpoints.load(str(out_dir))
  config = common.base_config()
  config.model.update(name=name, num_classes=NUM_CLASSES, dtype='float32',
                      convention=convention)
  config.resizer = common.resizer_config('none', SIZE, SIZE)
  model = composite.build_model(config)
  variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
  return np.asarray(jax.jit(
      lambda v, x: model.apply(v, x, train=False))(variables, x))


def assert_same_logits(ours, theirs):
  assert ours.shape == theirs.shape == (2, NUM_CLASSES)
  scale = np.abs(theirs).max()
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-5 * scale + 1e-6)


# ------------------------------------------------------------------- Keras

KERAS_MODELS = {
    'resnet50': ('ResNet50', 'resnet50'),
    'densenet121': ('DenseNet121', 'densenet'),
    'mobilenet_v2': ('MobileNetV2', 'mobilenet_v2'),
    'efficientnet_b0': ('EfficientNetB0', 'efficientnet'),
}


def keras_model(name):
  """A Keras application with random weights and BN statistics; its
  Normalization layer (EfficientNet) holds ImageNet statistics, as Keras'
  ImageNet file does."""
  import keras  # pylint: disable=g-import-not-at-top
  net = getattr(keras.applications, KERAS_MODELS[name][0])(
      weights=None, input_shape=(SIZE, SIZE, 3), classes=NUM_CLASSES,
      classifier_activation=None)
  rng = np.random.default_rng(1)
  for layer in net.layers:
    values = layer.get_weights()
    if isinstance(layer, keras.layers.Normalization):
      mean, std = composite.IMAGENET_MEAN, composite.IMAGENET_STD
      layer.set_weights([np.array(mean), np.square(std), values[2]])
      layer.finalize_state()
      continue
    new = []
    for w, v in zip(layer.weights, values):
      if w.name in ('gamma', 'moving_variance'):
        v = rng.uniform(0.5, 1.5, v.shape)
      elif w.name in ('beta', 'bias', 'moving_mean'):
        v = rng.normal(0, 0.2, v.shape)
      new.append(v.astype(np.float32))
    layer.set_weights(new)
  return net


def save_legacy_h5(net, path):
  """The layout of the files `keras.applications` downloads (Keras 2 HDF5)."""
  from keras.src.legacy.saving import legacy_h5_format  # pylint: disable=g-import-not-at-top
  with h5py.File(path, 'w') as f:
    legacy_h5_format.save_weights_to_hdf5_group(f, net)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(KERAS_MODELS))
def test_keras_weights_reproduce_keras_logits(name, tmp_path):
  import keras  # pylint: disable=g-import-not-at-top
  net = keras_model(name)
  if name == 'resnet50':  # Both file layouts: Keras 2 HDF5 and Keras 3.
    source = tmp_path / 'resnet50_weights_tf_dim_ordering_tf_kernels.h5'
    save_legacy_h5(net, source)
  else:
    source = tmp_path / f'{name}.weights.h5'
    net.save_weights(source)
  x = images()
  preprocess = getattr(keras.applications, KERAS_MODELS[name][1]).preprocess_input
  theirs = np.asarray(net(preprocess(x.astype(np.float32)), training=False))

  description = import_weights.import_weights(name, str(source),
                                              str(tmp_path / 'out'))

  assert description['model'] == dict(name=name, num_classes=NUM_CLASSES,
                                      dtype='float32', convention='keras')
  assert json.loads((tmp_path / 'out' / 'imported.json').read_text()) == (
      description)
  assert_same_logits(our_logits(tmp_path / 'out', name, 'keras', x), theirs)


@pytest.mark.slow
def test_keras_file_of_another_model_is_refused_naming_the_file(tmp_path):
  source = tmp_path / 'mobilenet.weights.h5'
  keras_model('mobilenet_v2').save_weights(source)
  with pytest.raises(ValueError, match='mobilenet.weights.h5.*DenseNet121'):
    import_weights.import_weights('densenet121', str(source),
                                  str(tmp_path / 'out'))
  assert not os.path.exists(tmp_path / 'out')


# ------------------------------------------------------------------- torch

TORCH_MODELS = ('resnet50', 'densenet121', 'mobilenet_v2', 'efficientnet_b0')


def torch_logits(net, x):
  mean = np.array(composite.IMAGENET_MEAN, np.float32)
  std = np.array(composite.IMAGENET_STD, np.float32)
  nchw = ((x / np.float32(255) - mean) / std).transpose(0, 3, 1, 2)
  with torch.no_grad():
    return net(torch.from_numpy(np.ascontiguousarray(nchw))).numpy()


def save_state_dict(net, path, old_densenet_keys=False):
  state = net.state_dict()
  if old_densenet_keys:  # As torchvision's own densenet121 file has them.
    state = {k.replace('norm1.', 'norm.1.').replace('conv1.', 'conv.1.')
             .replace('norm2.', 'norm.2.').replace('conv2.', 'conv.2.')
             if 'denselayer' in k else k: v for k, v in state.items()}
  torch.save(state, path)


@pytest.mark.slow
@pytest.mark.parametrize('name', TORCH_MODELS)
def test_torchvision_weights_reproduce_torch_logits(name, tmp_path):
  net = torch_models.build(name, NUM_CLASSES)
  source = tmp_path / f'{name}.pth'
  save_state_dict(net, source, old_densenet_keys=name == 'densenet121')
  x = images()

  description = import_weights.import_weights(name, str(source),
                                              str(tmp_path / 'out'))

  assert description['model']['convention'] == 'torchvision'
  assert description['format'] == 'torch'
  assert_same_logits(our_logits(tmp_path / 'out', name, 'torchvision', x),
                     torch_logits(net, x))


@pytest.fixture(name='densenet_state')
def fixture_densenet_state():
  return torch_models.build('densenet_tiny', NUM_CLASSES).state_dict()


def test_mismatched_tensor_fails_naming_it_and_both_shapes(tmp_path,
                                                           densenet_state):
  densenet_state['features.conv0.weight'] = torch.zeros(16, 3, 5, 5)
  torch.save(densenet_state, tmp_path / 'bad.pth')
  with pytest.raises(ValueError, match=(
      r"'features.conv0.weight' has shape \(16, 3, 5, 5\).*conv_stem/kernel "
      r'in densenet_tiny has shape \(7, 7, 3, 16\)')):
    import_weights.import_weights('densenet_tiny', str(tmp_path / 'bad.pth'),
                                  str(tmp_path / 'out'))


def test_unknown_and_missing_tensors_fail_naming_them(tmp_path, densenet_state):
  torch.save({**densenet_state, 'features.extra.weight': torch.zeros(3, 4)},
             tmp_path / 'extra.pth')
  with pytest.raises(ValueError, match=r'features.extra.weight \(3, 4\)'):
    import_weights.import_weights('densenet_tiny', str(tmp_path / 'extra.pth'),
                                  str(tmp_path / 'out'))
  del densenet_state['features.norm5.running_var']
  torch.save(densenet_state, tmp_path / 'missing.pth')
  with pytest.raises(ValueError, match=(
      r"bn_final/var \(densenet_tiny\) needs source tensor "
      r"'features.norm5.running_var'")):
    import_weights.import_weights('densenet_tiny', str(tmp_path / 'missing.pth'),
                                  str(tmp_path / 'out'))


def test_existing_output_is_never_overwritten(tmp_path, densenet_state):
  torch.save(densenet_state, tmp_path / 'w.pth')
  import_weights.import_weights('densenet_tiny', str(tmp_path / 'w.pth'),
                                str(tmp_path / 'out'))
  before = (tmp_path / 'out' / 'imported.json').read_text()
  with pytest.raises(FileExistsError, match='already holds a checkpoint'):
    import_weights.import_weights('densenet_tiny', str(tmp_path / 'w.pth'),
                                  str(tmp_path / 'out'))
  assert (tmp_path / 'out' / 'imported.json').read_text() == before


def test_pickled_code_is_not_executed(tmp_path):
  """weights_only=True: a file that would run code on load is refused."""
  torch.save({'fn': os.system}, tmp_path / 'evil.pth')
  with pytest.raises(ValueError, match='evil.pth: not a torch state dict '
                     'of tensors') as refused:
    import_weights.import_weights('densenet_tiny', str(tmp_path / 'evil.pth'),
                                  str(tmp_path / 'out'))
  # torch's own text would advise loading it with weights_only=False.
  assert 'weights_only=False' not in str(refused.value)


@pytest.mark.slow
def test_command_line_imports_and_names_bad_input(tmp_path, densenet_state):
  torch.save(densenet_state, tmp_path / 'w.pth')
  command = [sys.executable, '-m', 'resizer.import_weights',
             '--model=densenet_tiny', f'--out={tmp_path / "out"}']
  done = subprocess.run(command + [f'--source={tmp_path / "w.pth"}'],
                        capture_output=True, text=True, check=True)
  assert json.loads(done.stdout)['model']['name'] == 'densenet_tiny'
  failed = subprocess.run(command + [f'--source={tmp_path / "nothere.pth"}'],
                          capture_output=True, text=True)
  assert failed.returncode == 1
  assert 'nothere.pth' in failed.stderr and 'does not exist' in failed.stderr

"""Inception-v2 (TF-slim's `inception_v2`): parameter counts, shapes, dtypes.

Trainable parameters, by hand from slim's definition. Notation: c(k, i, o) =
k*k*i*o + o, a kxk convolution from i to o channels without bias plus the o
BatchNorm betas (slim's BatchNorm has scale=False: beta only, no gamma).

  Conv2d_1a_7x7 separable (no BN, bias): depthwise 7*7*3*8 = 1,176,
      pointwise 24*64 = 1,536, biases 64                            2,776
  Conv2d_2b_1x1 c(1, 64, 64) = 4,160; Conv2d_2c_3x3 c(3, 64, 192)
      = 110,784                                                    114,944
  Mixed_3b (192 in): c(1,192,64) + [c(1,192,64) + c(3,64,64)]
      + [c(1,192,64) + c(3,64,96) + c(3,96,96)] + c(1,192,32)
      = 12,352 + 49,280 + 150,784 + 6,176                          218,592
  Mixed_3c (256 in): c(1,256,64) + [c(1,256,64) + c(3,64,96)]
      + [c(1,256,64) + c(3,64,96) + c(3,96,96)] + c(1,256,64)
      = 16,448 + 71,840 + 154,880 + 16,448                         259,616
  Mixed_4a (320 in): [c(1,320,128) + c(3,128,160)]
      + [c(1,320,64) + c(3,64,96) + c(3,96,96)]
      = 225,568 + 158,976                                          384,544
  Mixed_4b (576 in): c(1,576,224) + [c(1,576,64) + c(3,64,96)]
      + [c(1,576,96) + c(3,96,128) + c(3,128,128)] + c(1,576,128)
      = 129,248 + 92,320 + 313,696 + 73,856                        609,120
  Mixed_4c: c(1,576,192) + [c(1,576,96) + c(3,96,128)]
      + [c(1,576,96) + c(3,96,128) + c(3,128,128)] + c(1,576,128)
      = 110,784 + [55,392 + 110,720] + [55,392 + 110,720 + 147,584]
      + 73,856                                                     664,448
  Mixed_4d: c(1,576,160) + [c(1,576,128) + c(3,128,160)]
      + [c(1,576,128) + c(3,128,160) + c(3,160,160)] + c(1,576,96)
      = 92,320 + [73,856 + 184,480] + [73,856 + 184,480 + 230,560]
      + 55,392                                                     894,944
  Mixed_4e: c(1,576,96) + [c(1,576,128) + c(3,128,192)]
      + [c(1,576,160) + c(3,160,192) + c(3,192,192)] + c(1,576,96)
      = 55,392 + [73,856 + 221,376] + [92,320 + 276,672 + 331,968]
      + 55,392                                                   1,106,976
  Mixed_5a (576 in): [c(1,576,128) + c(3,128,192)]
      + [c(1,576,192) + c(3,192,256) + c(3,256,256)]
      = [73,856 + 221,376] + [110,784 + 442,624 + 590,080]       1,438,720
  Mixed_5b (1024 in): c(1,1024,352) + [c(1,1024,192) + c(3,192,320)]
      + [c(1,1024,160) + c(3,160,224) + c(3,224,224)] + c(1,1024,128)
      = 360,800 + [196,800 + 553,280] + [164,000 + 322,784 + 451,808]
      + 131,200                                                  2,180,672
  Mixed_5c: as Mixed_5b but Branch_2 reduces to 192 (and pools with max):
      360,800 + [196,800 + 553,280] + [196,800 + 387,296 + 451,808]
      + 131,200                                                  2,277,984
  ---------------------------------------------------------------------
  Backbone                                                      10,153,336
  Logits/Conv2d_1c_1x1 (bias, no BN): 1024*1000 + 1000          1,025,000
  Total at 1000 classes                                         11,178,336
  Total at 1001 classes (+1024 + 1)                             11,179,361

BatchNorm layers: every slim.conv2d except the logits, i.e. 2 (stem) + 7 per
4-branch Mixed block (x 8) + 5 per reduction block (x 2) = 68 layers over
channels 256 (stem) + 480 (3b) + 544 (3c) + 544 (4a) + 864 (4b) + 896 (4c)
+ 992 (4d) + 1,056 (4e) + 1,024 (5a) + 1,600 (5b) + 1,632 (5c) = 9,888;
statistics (moving mean and variance) = 2 * 9,888 = 19,776.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from resizer.models.inception import InceptionV2, avg_pool_3x3

PARAMS_1000 = 11_178_336
BN_CHANNELS = 9_888


def _c(k, i, o):
  return k * k * i * o + o


# Per-block figures from the docstring, checked against their formulas.
BLOCKS = {
    'conv2d_1a_7x7': 7 * 7 * 3 * 8 + 24 * 64 + 64,
    'conv2d_2b_1x1': _c(1, 64, 64),
    'conv2d_2c_3x3': _c(3, 64, 192),
    'mixed_3b': 218_592,
    'mixed_3c': 259_616,
    'mixed_4a': 384_544,
    'mixed_4b': 609_120,
    'mixed_4c': 664_448,
    'mixed_4d': 894_944,
    'mixed_4e': 1_106_976,
    'mixed_5a': 1_438_720,
    'mixed_5b': 2_180_672,
    'mixed_5c': 2_277_984,
}
# Per Mixed block: (in, b0, b1_reduce, b1, b2_reduce, b2, pool_proj) or, for
# the reductions, (in, b0_reduce, b0, b1_reduce, b1).
MIXED = {
    'mixed_3b': (192, 64, 64, 64, 64, 96, 32),
    'mixed_3c': (256, 64, 64, 96, 64, 96, 64),
    'mixed_4b': (576, 224, 64, 96, 96, 128, 128),
    'mixed_4c': (576, 192, 96, 128, 96, 128, 128),
    'mixed_4d': (576, 160, 128, 160, 128, 160, 96),
    'mixed_4e': (576, 96, 128, 192, 160, 192, 96),
    'mixed_5b': (1024, 352, 192, 320, 160, 224, 128),
    'mixed_5c': (1024, 352, 192, 320, 192, 224, 128),
}
REDUCTION = {
    'mixed_4a': (320, 128, 160, 64, 96),
    'mixed_5a': (576, 128, 192, 192, 256),
}


def _init_shapes(model, size=(224, 224)):
  x = jnp.zeros((1, *size, 3), jnp.float32)
  return jax.eval_shape(
      lambda: model.init(jax.random.key(0), x, train=False))


def _count(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


@pytest.fixture(scope='module')
def variables():
  return _init_shapes(InceptionV2(num_classes=1000))


def test_hand_breakdown_is_consistent():
  for name, (i, b0, b1r, b1, b2r, b2, pp) in MIXED.items():
    expected = (_c(1, i, b0) + _c(1, i, b1r) + _c(3, b1r, b1) + _c(1, i, b2r)
                + _c(3, b2r, b2) + _c(3, b2, b2) + _c(1, i, pp))
    assert BLOCKS[name] == expected, name
  for name, (i, b0r, b0, b1r, b1) in REDUCTION.items():
    expected = (_c(1, i, b0r) + _c(3, b0r, b0) + _c(1, i, b1r)
                + _c(3, b1r, b1) + _c(3, b1, b1))
    assert BLOCKS[name] == expected, name
  assert sum(BLOCKS.values()) == 10_153_336
  assert sum(BLOCKS.values()) + 1024 * 1000 + 1000 == PARAMS_1000


def test_param_count(variables):
  params = variables['params']
  assert _count(params) == PARAMS_1000
  for name, n in BLOCKS.items():
    assert _count(params[name]) == n, name
  assert _count(params['conv2d_1c_1x1']) == 1024 * 1000 + 1000
  n1001 = _count(_init_shapes(InceptionV2(num_classes=1001))['params'])
  assert n1001 == 11_179_361
  assert n1001 - PARAMS_1000 == 1024 + 1


def test_batch_norm_statistics(variables):
  stats = flatten_dict(variables['batch_stats'], sep='/')
  assert _count(stats) == 2 * BN_CHANNELS == 19_776
  assert len([k for k in stats if k.endswith('/mean')]) == 68
  # slim BatchNorm: center=True, scale=False → a beta ('bias'), no gamma.
  flat = flatten_dict(variables['params'], sep='/')
  assert not any(k.endswith('batch_norm/scale') for k in flat)
  assert sum(int(np.prod(v.shape)) for k, v in flat.items()
             if k.endswith('batch_norm/bias')) == BN_CHANNELS


def test_slim_layer_shapes(variables):
  flat = {k: v.shape for k, v in
          flatten_dict(variables['params'], sep='/').items()}
  # Separable first layer: slim depthwise_weights [7, 7, 3, 8] as a grouped
  # kernel, pointwise_weights [1, 1, 24, 64], biases, and no BatchNorm.
  stem = {k: v for k, v in flat.items() if k.startswith('conv2d_1a_7x7/')}
  assert stem == {
      'conv2d_1a_7x7/depthwise/kernel': (7, 7, 1, 24),
      'conv2d_1a_7x7/pointwise/kernel': (1, 1, 24, 64),
      'conv2d_1a_7x7/pointwise/bias': (64,),
  }
  assert flat['conv2d_1c_1x1/kernel'] == (1, 1, 1024, 1000)
  assert flat['conv2d_1c_1x1/bias'] == (1000,)
  assert flat['mixed_5c/branch_3/conv2d_0b_1x1/conv/kernel'] == (
      1, 1, 1024, 128)
  # No convolution followed by BatchNorm has a bias.
  assert not any(k.endswith('conv/bias') for k in flat)


@pytest.mark.parametrize('size', [(224, 224), (299, 299), (320, 200)])
def test_output_shapes(variables, size):
  model = InceptionV2(num_classes=1000)
  x = jax.ShapeDtypeStruct((3, *size, 3), jnp.float32)
  out = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False), variables, x)
  assert out.shape == (3, 1000)


def test_train_mode_shapes(variables):
  """train=True needs a 'dropout' rng and updates every BatchNorm."""
  model = InceptionV2(num_classes=1000)
  x = jax.ShapeDtypeStruct((2, 96, 128, 3), jnp.float32)
  out, updates = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'],
                               rngs={'dropout': jax.random.key(1)}),
      variables, x)
  assert out.shape == (2, 1000)
  assert _count(updates['batch_stats']) == 2 * BN_CHANNELS


def test_avg_pool_excludes_padding():
  x = jnp.arange(1, 17, dtype=jnp.float32).reshape(1, 4, 4, 1)
  y = avg_pool_3x3(x)[0, :, :, 0]
  assert y.shape == (4, 4)
  # Corner: mean of the 2x2 valid window (1, 2, 5, 6), as TF's SAME avg_pool.
  np.testing.assert_allclose(y[0, 0], (1 + 2 + 5 + 6) / 4)
  np.testing.assert_allclose(y[1, 1], np.mean([1, 2, 3, 5, 6, 7, 9, 10, 11]))


def _random_variables(shapes, seed=0):
  """Host-side stand-ins for `model.init` (jit-compiling the truncated-normal
  initialisers alone takes ~40 s on a CPU): He-scaled normal kernels, zero
  biases, unit moving variances."""
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = path[-1].key
    if name == 'kernel':
      fan_in = int(np.prod(s.shape[:-1]))
      return rng.normal(0, np.sqrt(2 / fan_in), s.shape).astype(s.dtype)
    if name == 'var':
      return np.ones(s.shape, s.dtype)
    return np.zeros(s.shape, s.dtype)  # biases, betas, moving means

  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.mark.slow
def test_bf16_forward_small_input():
  model = InceptionV2(num_classes=10, dtype=jnp.bfloat16)
  x = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(1), x, train=False))
  # Parameters and statistics stay float32 under a bf16 compute dtype.
  for leaf in jax.tree.leaves(shapes):
    assert leaf.dtype == jnp.float32
  variables = _random_variables(shapes)
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert out.shape == (2, 10)
  assert out.dtype == jnp.bfloat16
  out = np.asarray(out.astype(jnp.float32))
  assert np.all(np.isfinite(out))
  assert np.std(out) > 0  # not collapsed to a constant

"""EfficientNet-B0: parameter and statistic counts, shapes, a tiny forward."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resizer.models.common import batch_norm
from resizer.models.efficientnet import (EfficientNetB0, EfficientNetTiny,
                                         MBConv)
from tests.helpers import check_bf16_forward

# torchvision's `efficientnet_b0` num_params.
B0_PARAMS = 5_288_548
# Mean and variance of the 21,008 BatchNorm channels: stem 32, head 1280 and
# each MBConv's expansion (when ratio != 1), depthwise and projection widths.
B0_BN_STATS = 42_016


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _bn_param_count(params):
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return sum(int(np.prod(leaf.shape)) for path, leaf in flat
             if any(getattr(k, 'key', '').startswith('bn_') for k in path))


def _abstract_init(model, shape):
  return jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


@pytest.fixture(scope='module')
def b0_variables():
  return _abstract_init(EfficientNetB0(num_classes=1000), (1, 224, 224, 3))


def test_trainable_parameter_count(b0_variables):
  assert _count(b0_variables['params']) == B0_PARAMS


def test_batch_norm_statistic_count(b0_variables):
  stats = b0_variables['batch_stats']
  assert _count(stats) == B0_BN_STATS
  assert _bn_param_count(b0_variables['params']) == B0_BN_STATS


def test_no_expansion_conv_when_ratio_is_one(b0_variables):
  params = b0_variables['params']
  assert 'conv_expand' not in params['stage1_block1']
  assert 'conv_expand' in params['stage2_block1']
  # SE width comes from the block's input channels (80 // 4), not the
  # expanded 480.
  assert params['stage5_block1']['se']['fc1']['kernel'].shape == (1, 1, 480,
                                                                  20)


@pytest.mark.parametrize('hw', [(224, 224), (150, 150), (320, 200)])
def test_output_shapes(hw):
  model = EfficientNetB0(num_classes=10)
  x = jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32)
  out, _ = jax.eval_shape(
      lambda x: model.init_with_output(jax.random.key(0), x, train=False), x)
  assert out.shape == (2, 10)


@pytest.mark.slow
def test_tiny_runs_in_bfloat16():
  """bf16 compute, float32 parameters, eval and train, finite outputs."""
  check_bf16_forward(EfficientNetTiny(num_classes=5, dtype=jnp.bfloat16), num_classes=5)


def test_stochastic_depth_drops_whole_examples():
  """With rate 0.5 each example's residual branch is either dropped or
  scaled by 2; without train it is untouched."""
  conv = functools.partial(nn.Conv, use_bias=False)
  norm = batch_norm(True, jnp.float32, None)
  x = np.random.default_rng(0).normal(size=(16, 6, 6, 8)).astype(np.float32)

  def block(rate):
    return MBConv(8, 2, 3, conv=conv, norm=norm, stochastic_depth_rate=rate)

  shapes = jax.eval_shape(
      lambda: block(0.5).init(jax.random.key(0), x, train=False))
  rng = np.random.default_rng(1)
  variables = jax.tree_util.tree_map(
      lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)

  @jax.jit
  def run(variables, key):
    kept = block(0.0).apply(variables, x, train=True, mutable=['batch_stats'])
    dropped = block(0.5).apply(variables, x, train=True, rngs={'dropout': key},
                               mutable=['batch_stats'])
    return kept[0] - x, dropped[0] - x

  branch, dropped = map(np.asarray, run(variables, jax.random.key(3)))
  zero = np.all(dropped == 0, axis=(1, 2, 3))
  doubled = np.all(np.isclose(dropped, 2 * branch, rtol=1e-5, atol=1e-5),
                   axis=(1, 2, 3))
  assert np.all(zero | doubled)
  assert zero.any() and doubled.any()

"""MobileNetV2: parameter and statistic counts, shapes, a tiny forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resizer.models.mobilenet import MobileNetV2, MobileNetV2Tiny

# torchvision's `mobilenet_v2` (width 1.0).
V2_PARAMS = 3_504_872
# Mean and variance of the 17,056 BatchNorm channels: stem 32, head 1280 and
# each block's expansion (when ratio != 1), depthwise and projection widths.
V2_BN_STATS = 34_112


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _bn_param_count(params):
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return sum(int(np.prod(leaf.shape)) for path, leaf in flat
             if any(getattr(k, 'key', '').startswith('bn_') for k in path))


@pytest.fixture(scope='module')
def v2_variables():
  return jax.eval_shape(lambda: MobileNetV2(num_classes=1000).init(
      jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False))


def test_trainable_parameter_count(v2_variables):
  assert _count(v2_variables['params']) == V2_PARAMS


def test_batch_norm_statistic_count(v2_variables):
  assert _count(v2_variables['batch_stats']) == V2_BN_STATS
  assert _bn_param_count(v2_variables['params']) == V2_BN_STATS


def test_first_block_has_no_expansion(v2_variables):
  params = v2_variables['params']
  assert 'conv_expand' not in params['stage1_block1']
  assert 'conv_expand' in params['stage2_block1']
  assert params['conv_head']['kernel'].shape == (1, 1, 320, 1280)


@pytest.mark.parametrize('hw', [(224, 224), (150, 150), (320, 200)])
def test_output_shapes(hw):
  model = MobileNetV2(num_classes=10)
  x = jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32)
  out, _ = jax.eval_shape(
      lambda x: model.init_with_output(jax.random.key(0), x, train=False), x)
  assert out.shape == (2, 10)


def test_tiny_runs_in_bfloat16():
  """Forward passes in bfloat16 with float32 parameters, eval and train.

  The variables are filled from numpy with the shapes `init` declares rather
  than drawn by `init` itself: compiling threefry sampling for every
  parameter shape costs seconds on a CPU.
  """
  model = MobileNetV2Tiny(num_classes=5, dtype=jnp.bfloat16)
  x = np.random.default_rng(1).normal(size=(4, 40, 36, 3)).astype(np.float32)
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), x, train=False))
  assert all(p.dtype == jnp.float32
             for p in jax.tree_util.tree_leaves(shapes['params']))
  rng = np.random.default_rng(0)
  variables = jax.tree_util.tree_map(
      lambda s: (0.1 * rng.normal(size=s.shape)).astype(s.dtype), shapes)
  variables['batch_stats'] = jax.tree_util.tree_map(
      np.abs, variables['batch_stats'])  # Variances must be non-negative.

  @jax.jit
  def forward(variables, x, key):
    eval_out = model.apply(variables, x, train=False)
    train_out, updates = model.apply(variables, x, train=True,
                                     rngs={'dropout': key},
                                     mutable=['batch_stats'])
    return eval_out, train_out, updates

  eval_out, train_out, updates = forward(variables, x, jax.random.key(2))
  for out in (eval_out, train_out):
    assert out.shape == (4, 5) and out.dtype == jnp.bfloat16
    assert np.all(np.isfinite(np.asarray(out, np.float32)))
  assert (jax.tree_util.tree_structure(updates['batch_stats']) ==
          jax.tree_util.tree_structure(shapes['batch_stats']))
  assert all(np.all(np.isfinite(u))
             for u in jax.tree_util.tree_leaves(updates['batch_stats']))

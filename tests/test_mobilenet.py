"""MobileNetV2: parameter and statistic counts, shapes, a tiny forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resizer.models.mobilenet import MobileNetV2, MobileNetV2Tiny
from tests.helpers import check_bf16_forward

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


@pytest.mark.slow
def test_tiny_runs_in_bfloat16():
  """bf16 compute, float32 parameters, eval and train, finite outputs."""
  check_bf16_forward(MobileNetV2Tiny(num_classes=5, dtype=jnp.bfloat16), num_classes=5)
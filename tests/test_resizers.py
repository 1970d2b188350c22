"""The learned resizer (SPEC §1) and its baselines (§4)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resizer.models.resizers import (FixedResizer, IdentityResizer,
                                     LearnedResizer, MullerResizer,
                                     bilinear_two_tap, gaussian_blur,
                                     gaussian_kernel, reference_resize,
                                     resize)


def counts(module, in_size=(64, 64)):
  v = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1, *in_size, 3)), train=False))
  params = sum(x.size for x in jax.tree.leaves(v.get('params', {})))
  stats = sum(x.size for x in jax.tree.leaves(v.get('batch_stats', {})))
  return params, stats


def conv_weights(module):
  v = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
  return sum(x.size for p, x in jax.tree_util.tree_leaves_with_path(v['params'])
             if p[-1].key == 'kernel')


def test_default_learned_resizer_has_paper_parameter_count():
  assert counts(LearnedResizer((224, 224)), (448, 448)) == (12_035, 128)


@pytest.mark.parametrize('r, n, expected', [
    (1, 16, 11_872), (2, 16, 16_480), (3, 16, 21_088), (4, 16, 25_696),
    (1, 32, 38_080), (2, 32, 56_512), (3, 32, 74_944), (4, 32, 93_376)])
def test_conv_weight_counts_match_paper_table(r, n, expected):
  assert conv_weights(LearnedResizer((16, 16), num_filters=n,
                                     num_res_blocks=r)) == expected


@pytest.mark.slow
def test_residual_blocks_are_chained():
  """Block k must take block k-1's output: perturbing block 1's weights
  changes the output of a two-block resizer even with block 2 held fixed."""
  m = LearnedResizer((8, 8), num_res_blocks=2)
  x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
  v = m.init(jax.random.key(0), x, train=False)
  # Make block 2 the identity by zeroing its last BN scale and bias.
  p = jax.tree.map(lambda a: a, v['params'])
  p['res_block2']['bn2'] = jax.tree.map(jnp.zeros_like, p['res_block2']['bn2'])
  p['res_block1']['bn2']['bias'] = p['res_block1']['bn2']['bias'] + 1.0
  out_a = m.apply({**v, 'params': p}, x, train=False)
  p['res_block1']['bn2']['bias'] = p['res_block1']['bn2']['bias'] + 1.0
  out_b = m.apply({**v, 'params': p}, x, train=False)
  assert not np.allclose(out_a, out_b)


@pytest.mark.parametrize('in_size, out_size', [
    ((64, 64), (32, 32)),     # down
    ((32, 32), (64, 64)),     # up
    ((60, 40), (20, 50)),     # aspect-ratio change, down in h, up in w
])
@pytest.mark.parametrize('make', [
    lambda o: LearnedResizer(o), lambda o: FixedResizer(o, 'bicubic'),
    lambda o: MullerResizer(o)])
def test_any_output_size(make, in_size, out_size):
  m = make(out_size)
  x = jnp.zeros((2, *in_size, 3))
  v = jax.eval_shape(lambda: m.init(jax.random.key(0), x, train=False))
  y = jax.eval_shape(lambda v: m.apply(v, x, train=False), v)
  assert y.shape == (2, *out_size, 3)


@pytest.mark.slow
def test_learned_output_is_naive_resize_plus_unclamped_residual():
  m = LearnedResizer((16, 16))
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
  v = m.init(jax.random.key(0), x, train=False)
  # Zero the final convolution: the output must be exactly the naive resize.
  p = dict(v['params'])
  p['conv_to_image'] = jax.tree.map(jnp.zeros_like, p['conv_to_image'])
  out = m.apply({**v, 'params': p}, x, train=False)
  np.testing.assert_allclose(out, resize(x, (16, 16), 'bilinear', False),
                             atol=1e-6)
  # With random weights it leaves [0, 1]: no clamping.
  p['conv_to_image'] = jax.tree.map(lambda a: a + 1.0, p['conv_to_image'])
  out = m.apply({**v, 'params': p}, x, train=False)
  assert out.max() > 1.0


@pytest.mark.slow
def test_gradient_reaches_every_learned_parameter():
  m = LearnedResizer((16, 16), num_res_blocks=2)
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
  v = m.init(jax.random.key(0), x, train=False)

  def loss(params):
    y, _ = m.apply({**v, 'params': params}, x, train=True,
                   mutable=['batch_stats'])
    return jnp.sum(jnp.sin(3 * y))

  grads = jax.grad(loss)(v['params'])
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert jnp.any(g != 0), f'no gradient reaches {jax.tree_util.keystr(path)}'


def test_antialias_is_explicit_and_off_by_default():
  # White noise shrunk 4x: without antialiasing each output pixel mixes
  # only its 2x2 nearest inputs and stays noisy; antialiased, the filter
  # widens with the scale and averages most of the noise away.
  x = jax.random.uniform(jax.random.key(0), (1, 256, 256, 1))
  plain = FixedResizer((64, 64))(x)
  smooth = FixedResizer((64, 64), antialias=True)(x)
  assert float(jnp.std(smooth)) < 0.5 * float(jnp.std(plain))
  assert FixedResizer((16, 16)).antialias is False
  assert LearnedResizer((16, 16)).antialias is False
  assert MullerResizer((16, 16)).antialias is False


def test_fixed_resizer_has_no_parameters():
  assert counts(FixedResizer((16, 16))) == (0, 0)


@pytest.mark.slow
def test_muller_starts_as_its_base_resize():
  m = MullerResizer((24, 40), num_layers=3)
  x = jax.random.uniform(jax.random.key(1), (2, 48, 64, 3))
  v = m.init(jax.random.key(0), x)
  assert counts(m, (48, 64)) == (6, 0)
  np.testing.assert_allclose(m.apply(v, x),
                             resize(x, (24, 40), 'bilinear', False), atol=1e-6)
  # And its scalars get gradients, so it does learn.
  grads = jax.grad(lambda p: jnp.sum(m.apply({'params': p}, x) ** 2))(v['params'])
  assert all(jnp.any(g != 0) for g in jax.tree.leaves(grads))


def test_identity_resizer_checks_the_pipeline_size():
  x = jnp.zeros((1, 32, 32, 3))
  assert IdentityResizer((32, 32))(x) is x
  with pytest.raises(ValueError, match='expects images of size'):
    IdentityResizer((16, 16))(x)


@pytest.mark.parametrize('make, match', [
    (lambda: LearnedResizer((16, 16), num_res_blocks=0), 'num_res_blocks=0'),
    (lambda: LearnedResizer((16, 16), num_filters=-1), 'num_filters=-1'),
    (lambda: LearnedResizer((0, 16)), r'out_size=\(0, 16\)'),
    (lambda: LearnedResizer((16, 16), interpolation='area'),
     "interpolation='area'.*bicubic"),
    (lambda: FixedResizer((16, 16), interpolation='cubic'), "'cubic'"),
    (lambda: MullerResizer((16, 16), kernel_size=4), 'kernel_size=4'),
])
def test_bad_arguments_fail_at_construction(make, match):
  with pytest.raises(ValueError, match=match):
    make()


@pytest.mark.slow
@pytest.mark.parametrize('in_size, out_size', [
    ((448, 448), (224, 224)), ((368, 368), (224, 224)), ((99, 81), (33, 27)),
    ((37, 53), (18, 26)), ((37, 53), (74, 106)), ((20, 30), (20, 7)),
])
def test_two_tap_bilinear_matches_jax_image_resize_and_its_gradient(in_size,
                                                                    out_size):
  # Float32 tolerance: jax.image.resize computes its sample coordinates in
  # float32 (~3e-5 error at coordinate ~366), the two-tap weights in float64.
  x = jax.random.normal(jax.random.key(0), (2, *in_size, 3))
  ref = lambda x: reference_resize(x, out_size, 'bilinear', False)
  fast = lambda x: bilinear_two_tap(x, out_size)
  np.testing.assert_allclose(fast(x), ref(x), rtol=1e-4, atol=1e-4)
  cot = jax.random.normal(jax.random.key(1), (2, *out_size, 3))
  g_ref = jax.grad(lambda x: jnp.sum(ref(x) * cot))(x)
  g_fast = jax.grad(lambda x: jnp.sum(fast(x) * cot))(x)
  np.testing.assert_allclose(g_fast, g_ref, rtol=1e-4, atol=1e-4)


def test_resize_takes_the_fast_path_only_for_plain_bilinear():
  x = jax.random.normal(jax.random.key(0), (1, 64, 64, 1))
  jaxpr = str(jax.make_jaxpr(lambda x: resize(x, (32, 32), 'bilinear', False))(x))
  assert 'dot_general' not in jaxpr
  jaxpr = str(jax.make_jaxpr(lambda x: resize(x, (32, 32), 'bilinear', True))(x))
  assert 'dot_general' in jaxpr


@pytest.mark.parametrize('make, num_resizes', [
    (lambda fn: FixedResizer((8, 8), resize_fn=fn), 1),
    # The naive resize and the bottleneck's.
    (lambda fn: LearnedResizer((8, 8), num_filters=4, resize_fn=fn), 2),
    # The base resize and one detail term per layer.
    (lambda fn: MullerResizer((8, 8), num_layers=2, resize_fn=fn), 3)])
def test_every_fixed_resize_goes_through_the_resize_fn_field(make,
                                                             num_resizes):
  calls = []

  def counting(x, out_size, interpolation, antialias):
    calls.append(tuple(out_size))
    return reference_resize(x, out_size, interpolation, antialias)

  x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
  variables = make(resize).init(jax.random.key(1), x, train=False)
  want = make(resize).apply(variables, x, train=False)
  calls.clear()
  got = make(counting).apply(variables, x, train=False)
  assert calls == [(8, 8)] * num_resizes
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_gaussian_blur_equals_the_depthwise_convolution_it_replaces():
  x = jax.random.normal(jax.random.key(0), (2, 19, 23, 3))
  k = jnp.asarray(gaussian_kernel(5, 1.0), jnp.float32)
  conv = lambda x, kernel: jax.lax.conv_general_dilated(
      x, jnp.tile(kernel, (1, 1, 1, 3)), (1, 1), 'SAME', feature_group_count=3,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  reference = conv(conv(x, k.reshape(1, 5, 1, 1)), k.reshape(5, 1, 1, 1))
  np.testing.assert_allclose(gaussian_blur(x, 5, 1.0), reference, atol=1e-5)


class StraightforwardLearnedResizer(nn.Module):
  """SPEC §1 written plainly: nn.BatchNorm, then jax.image.resize. The
  optimised LearnedResizer must compute the same with the same variables."""
  out_size: tuple
  interpolation: str = 'bilinear'
  antialias: bool = False
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train=True):
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=0.9, epsilon=1e-3,
                             axis_name=self.axis_name)
    act = functools.partial(nn.leaky_relu, negative_slope=0.2)
    conv3 = functools.partial(nn.Conv, 16, (3, 3), padding='SAME',
                              use_bias=False)
    rs = lambda t: reference_resize(t, self.out_size, self.interpolation,
                                    self.antialias)
    naive = rs(x)
    f = act(nn.Conv(16, (7, 7), padding='SAME', name='conv_in')(x))
    f = act(nn.Conv(16, (1, 1), name='conv_1x1')(f))
    bottleneck = rs(norm(name='bn_in')(f))
    z = act(norm(name='bn1')(conv3(name='conv1')(bottleneck)))
    y = bottleneck + norm(name='bn2')(conv3(name='conv2')(z))
    y = norm(name='bn_out')(conv3(name='conv_out')(y)) + bottleneck
    return nn.Conv(3, (7, 7), padding='SAME', name='conv_to_image')(y) + naive


def _assert_close(got, want):
  """Float32 tolerance, relative to each array's largest magnitude (a
  gradient sums many products)."""
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b, rtol=1e-4, atol=1e-5 * float(np.abs(b).max()) + 1e-6), got, want)


def _as_straightforward(tree):
  """LearnedResizer's variables under the straightforward module's names."""
  out = {}
  for collection, modules in tree.items():
    flat = dict(modules)
    block = flat.pop('res_block1')
    out[collection] = {**flat, **block}
  return out


@pytest.mark.slow
@pytest.mark.parametrize('in_size, out_size, interpolation, antialias', [
    ((48, 48), (24, 24), 'bilinear', False),
    ((46, 38), (20, 30), 'bilinear', False),
    ((48, 48), (24, 24), 'bicubic', True),
])
def test_optimised_resizer_matches_straightforward_implementation(
    in_size, out_size, interpolation, antialias):
  """Outputs, BatchNorm updates and gradients, in training and evaluation."""
  fast = LearnedResizer(out_size=out_size, interpolation=interpolation,
                        antialias=antialias)
  plain = StraightforwardLearnedResizer(out_size, interpolation, antialias)
  x = jax.random.uniform(jax.random.key(0), (4, *in_size, 3))
  v = fast.init(jax.random.key(1), x, train=False)
  v = jax.tree.map(lambda t: t + 0.1 * jax.random.normal(  # Non-trivial BN.
      jax.random.key(2), t.shape), v)
  v['batch_stats'] = jax.tree.map(jnp.abs, v['batch_stats'])
  cot = jax.random.normal(jax.random.key(3), (4, *out_size, 3))

  def loss(module, params, stats):
    y, new = module.apply({'params': params, 'batch_stats': stats}, x,
                          train=True, mutable=['batch_stats'])
    return jnp.sum(y * cot), (y, new['batch_stats'])

  (_, (y, stats)), grads = jax.value_and_grad(
      functools.partial(loss, fast), has_aux=True)(v['params'], v['batch_stats'])
  (_, (y_ref, stats_ref)), grads_ref = jax.value_and_grad(
      functools.partial(loss, plain), has_aux=True)(
          *(_as_straightforward(v)[c] for c in ('params', 'batch_stats')))
  _assert_close(y, y_ref)
  for got, want in [(stats, stats_ref), (grads, grads_ref)]:
    _assert_close(_as_straightforward({'c': got})['c'], want)
  _assert_close(fast.apply(v, x, train=False),
                plain.apply(_as_straightforward(v), x, train=False))


@pytest.mark.slow
def test_optimised_resizer_synchronises_batch_statistics_like_batchnorm():
  """Under shard_map over 8 devices with the BN axis named, as in training."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ('batch',))
  fast = LearnedResizer(out_size=(12, 12), bn_axis_name='batch')
  plain = StraightforwardLearnedResizer((12, 12), axis_name='batch')
  x = jax.random.uniform(jax.random.key(0), (8, 24, 24, 3))
  v = LearnedResizer(out_size=(12, 12)).init(jax.random.key(1), x, train=False)

  def train_apply(module, variables):
    # Jitted: one compiled program instead of every op dispatched per shard.
    return jax.jit(jax.shard_map(
        lambda x: module.apply(variables, x, train=True,
                               mutable=['batch_stats']),
        mesh=mesh, in_specs=jax.sharding.PartitionSpec('batch'),
        out_specs=(jax.sharding.PartitionSpec('batch'),
                   jax.sharding.PartitionSpec()), check_vma=False))(x)

  y, stats = train_apply(fast, v)
  y_ref, stats_ref = train_apply(plain, _as_straightforward(v))
  _assert_close(y, y_ref)
  _assert_close(_as_straightforward({'c': stats['batch_stats']})['c'],
                stats_ref['batch_stats'])

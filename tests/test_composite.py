"""The resizer → backbone model and its construction from config blocks."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import common
from resizer import tasks, train
from resizer.models import composite
from resizer.models.common import CONV_IMPLS
from tests.helpers import init_compiled, variable_counts


def config(resizer='learned', in_size=64, out_size=32, name='resnet_tiny',
           num_classes=5, dtype='float32'):
  c = common.base_config()
  c.resizer = common.resizer_config(resizer, in_size, out_size)
  c.model.update(name=name, num_classes=num_classes, dtype=dtype)
  return c


@pytest.mark.slow
def test_keras_example_total_densenet121_with_resizer():
  """Keras' 'Learning to Resize' example: 300→150, 2 classes, 7,051,717."""
  model = composite.build_model(config('learned', 300, 150, 'densenet121', 2))
  assert sum(variable_counts(model, (300, 300))) == 7_051_717


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(composite.BACKBONES))
def test_every_backbone_is_buildable_by_name(name):
  model = composite.build_model(config(name=name, in_size=64, out_size=64))
  params, _ = variable_counts(model, (64, 64))
  assert params > 0


@pytest.mark.slow
def test_bf16_compute_gives_finite_float32_logits_and_float32_params():
  model = composite.build_model(config(dtype='bfloat16'))
  images = jax.random.randint(jax.random.key(1), (2, 64, 64, 3), 0, 256
                              ).astype(jnp.uint8)
  v = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images)
  logits, state = jax.jit(lambda v, x: model.apply(
      v, x, train=True, mutable=['batch_stats', 'intermediates']))(v, images)
  assert logits.dtype == jnp.float32 and logits.shape == (2, 5)
  assert bool(jnp.all(jnp.isfinite(logits)))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v['params']))
  resized, = state['intermediates']['resized']
  assert resized.shape == (2, 32, 32, 3) and resized.dtype == jnp.bfloat16


@pytest.mark.slow
def test_resize_method_returns_the_resizer_output_in_unit_range():
  model = composite.build_model(config('bilinear', 64, 32))
  images = jnp.full((1, 64, 64, 3), 255, jnp.uint8)
  v = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images)
  resized = model.apply(v, images, method=model.resize)
  np.testing.assert_allclose(resized, 1.0, atol=1e-6)


@pytest.mark.parametrize('edit, match', [
    (lambda c: c.resizer.update(kind='magic'), r"config.resizer.kind='magic'.*learned"),
    (lambda c: c.resizer.update(out_size=0), 'config.resizer.out_size=0'),
    (lambda c: setattr(c, 'resizer', {**c.resizer, 'in_size': (64, -1)}),
     r'config.resizer.in_size=\(64, -1\)'),
    (lambda c: c.resizer.update(num_res_blocks=0), 'config.resizer.*num_res_blocks=0'),
    (lambda c: c.resizer.update(interpolation='area'), "config.resizer.*interpolation='area'"),
    (lambda c: c.resizer.update(kind='none'), 'in_size=.*must equal'),
    (lambda c: c.model.update(name='vgg'), "config.model.name='vgg'.*resnet50"),
    (lambda c: c.model.update(num_classes=0), 'config.model.num_classes=0'),
    (lambda c: c.model.update(dtype='fp8'), "config.model.dtype='fp8'"),
    (lambda c: c.model.update(conv_impl='cudnn'),
     "config.model.conv_impl='cudnn'.*cpu_forms"),
])
def test_bad_config_fails_at_construction_naming_the_key(edit, match):
  c = config()
  edit(c)
  with pytest.raises(ValueError, match=match):
    composite.build_model(c)


@pytest.mark.slow
@pytest.mark.parametrize('resizer', ['learned', 'muller'])
def test_remat_changes_no_output_gradient_or_statistic(resizer):
  """config.model.remat='resizer' recomputes the resizer in the backward
  pass: the same parameter tree, logits, BN statistics and gradients as
  storing its activations (float32)."""
  plain, remat = config(resizer), config(resizer)
  remat.model.remat = 'resizer'
  images = jax.random.randint(jax.random.key(1), (4, 64, 64, 3), 0, 256
                              ).astype(jnp.uint8)
  labels = jnp.arange(4) % 5
  results = []
  for c in (plain, remat):
    model = composite.build_model(c)
    variables = init_compiled(model, images)

    def loss(params, model=model, variables=variables):
      logits, new = model.apply({**variables, 'params': params}, images,
                                train=True, mutable=['batch_stats'])
      onehot = jax.nn.one_hot(labels, 5)
      return -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), -1)), (
          logits, new)

    step = jax.value_and_grad(loss, has_aux=True)
    (value, aux), grads = jax.jit(step)(variables['params'])
    results.append((variables, value, aux, grads))
  (v0, l0, aux0, g0), (v1, l1, aux1, g1) = results
  assert jax.tree.structure(v0) == jax.tree.structure(v1)
  np.testing.assert_allclose(l0, l1, rtol=1e-6)
  for a, b in zip(jax.tree.leaves((aux0, g0)), jax.tree.leaves((aux1, g1))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def train_step_temp_bytes(c, batch_size: int) -> int:
  """XLA's temporary bytes for the trainer's compiled step (nothing runs)."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), (train.AXIS,))
  model = composite.build_model(c)
  tx = optax.sgd(0.1)
  in_size = composite.as_size(c.resizer.in_size, 'in_size')
  state = jax.eval_shape(train.make_init(model, tx, in_size, mesh),
                         jax.random.key(0))
  batch = {'image': jax.ShapeDtypeStruct((batch_size, *in_size, 3), jnp.uint8),
           'label': jax.ShapeDtypeStruct((batch_size,), jnp.int32)}
  step = train.make_train_step(model, tx, tasks.get_task(c), lambda s: 0.1,
                               mesh)
  compiled = step.lower(state, batch, jax.random.key(1)).compile()
  return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.slow
def test_remat_frees_the_input_resolution_activations_of_the_compiled_step():
  """What remat is for, measured on the program XLA runs: the compiled
  train step no longer holds the learned resizer's 16-channel activations
  at the input resolution across the backbone: it needs at least two such
  tensors less (counted from their shapes; ResNet-18, whose activations
  outweigh the resizer's at 128→32). Without the step's compiler options
  XLA:CPU merges the recomputation with its forward twin and the saving is
  zero."""
  def imagenet_config(remat):
    c = common.imagenet_config('resizer=learned,res=128,out=32', 'resnet18')
    c.model.update(dtype='float32', num_classes=5, remat=remat)
    return c

  batch = 8
  tensor = batch * 128 * 128 * 16 * 4  # One float32 16-channel activation.
  saved = (train_step_temp_bytes(imagenet_config('none'), batch)
           - train_step_temp_bytes(imagenet_config('resizer'), batch))
  assert saved >= 2 * tensor, (saved, tensor)


def test_an_unknown_remat_is_refused_naming_the_key():
  c = config()
  c.model.remat = 'everything'
  with pytest.raises(ValueError, match=r"config.model.remat='everything'"):
    composite.build_model(c)


@pytest.mark.parametrize('name', sorted(
    n for n in composite.BACKBONES if n.endswith('_tiny')) + ['inception_v2'])
def test_every_convolution_of_a_backbone_is_its_conv_field(name):
  """A backbone's `conv` field builds all of its convolutions: each call of
  the given module's convolution is one kernel among the parameters."""
  calls = []
  def counting_conv(*args, **kwargs):
    calls.append(args[1].shape)
    return jax.lax.conv_general_dilated(*args, **kwargs)
  conv = functools.partial(nn.Conv, conv_general_dilated=counting_conv)
  backbone = composite.BACKBONES[name].module(num_classes=3, conv=conv)
  params = jax.eval_shape(lambda x: backbone.init(jax.random.key(0), x,
                                                  train=False),
                          jnp.zeros((1, 32, 32, 3)))['params']
  kernels = [leaf.shape for leaf in jax.tree.leaves(params)
             if len(leaf.shape) == 4]
  assert sorted(calls) == sorted(kernels) and kernels


@pytest.mark.parametrize('conv_impl', ['lax', 'cpu_forms'])
def test_the_learned_resizers_convolutions_follow_config_model_conv_impl(
    conv_impl):
  c = config()
  c.model.conv_impl = conv_impl
  model = composite.build_model(c)
  assert model.resizer.conv is CONV_IMPLS[conv_impl]
  assert model.backbone.conv is CONV_IMPLS[conv_impl]


def test_by_default_forward_mode_autodiff_runs_through_the_model():
  """jax.jvp works through the default convolutions on every platform, CPU
  included; the opt-in CPU forms are custom_vjp functions, which it cannot
  differentiate forwards."""
  c = config()
  images = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))
  def jvp(c):
    model = composite.build_model(c)
    v = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(
        images)
    f = lambda x: model.apply(v, x, train=False)
    return jax.jit(lambda x: jax.jvp(f, (x,), (jnp.ones_like(x),)))(images)
  logits, tangents = jvp(c)
  assert tangents.shape == logits.shape == (2, 5)
  assert bool(jnp.all(jnp.isfinite(tangents)))
  c.model.conv_impl = 'cpu_forms'
  with pytest.raises(TypeError, match='custom_vjp'):
    jvp(c)


@pytest.mark.parametrize('resizer, in_size, edit', [
    ('bicubic', 64, {}),
    ('none', 32, {}),
    ('muller', 64, {}),
    ('muller', 64, {'avg_pool': True}),  # Its naive resize pools first.
])
def test_a_resizer_with_nothing_learned_outputs_its_naive_resize(
    resizer, in_size, edit):
  """The image panels' 'naive' resize is the one each resizer starts from:
  a fixed resize is its own, and MULLER's zero-initialised layers add
  nothing to it."""
  c = config(resizer, in_size, 32)
  c.resizer.update(edit)
  model = composite.build_model(c)
  images = jax.random.randint(jax.random.key(1), (2, in_size, in_size, 3), 0,
                              256).astype(jnp.uint8)
  v = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images)
  resized = model.apply(v, images, method=model.resize)
  naive = model.apply(v, images, method=model.naive_resize)
  assert naive.shape == (2, 32, 32, 3) and naive.dtype == jnp.float32
  np.testing.assert_allclose(naive, resized, atol=1e-6)
  if resizer == 'none':
    np.testing.assert_array_equal(naive, images / np.float32(255))

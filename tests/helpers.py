"""Small utilities shared by the tests."""

import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image


def variable_counts(module, in_size=(224, 224), **call_kwargs):
  """(trainable parameters, BatchNorm statistics) via eval_shape: no compile."""
  v = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1, *in_size, 3)), train=False,
      **call_kwargs))
  return (sum(x.size for x in jax.tree.leaves(v.get('params', {}))),
          sum(x.size for x in jax.tree.leaves(v.get('batch_stats', {}))))


def output_shape(module, in_size, batch=2):
  """The shape of module(images) via eval_shape."""
  x = jnp.zeros((batch, *in_size, 3))
  v = jax.eval_shape(lambda: module.init(jax.random.key(0), x, train=False))
  return jax.eval_shape(lambda v: module.apply(v, x, train=False), v).shape


def check_bf16_forward(model, num_classes, in_size=(40, 36), batch=4):
  """Eval and train forward passes in bfloat16 with float32 parameters give
  finite logits and BN updates of the declared structure.

  The variables are filled from numpy with the shapes `init` declares rather
  than drawn by `init` itself: compiling threefry sampling for every
  parameter shape costs seconds on a CPU.
  """
  x = np.random.default_rng(1).normal(size=(batch, *in_size, 3)).astype(
      np.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(shapes['params']))
  rng = np.random.default_rng(0)
  variables = jax.tree.map(
      lambda s: (0.1 * rng.normal(size=s.shape)).astype(s.dtype), shapes)
  variables['batch_stats'] = jax.tree.map(
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
    assert out.shape == (batch, num_classes) and out.dtype == jnp.bfloat16
    assert np.all(np.isfinite(np.asarray(out, np.float32)))
  assert (jax.tree.structure(updates['batch_stats'])
          == jax.tree.structure(shapes['batch_stats']))
  assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates['batch_stats']))


def init_compiled(module, x, rngs=None):
  """`module.init(rngs, x, train=False)` compiled whole (rngs: key 0 by
  default): op by op, every parameter shape compiles its own sampler, which
  costs seconds on a CPU."""
  rngs = jax.random.key(0) if rngs is None else rngs
  return jax.jit(lambda x: module.init(rngs, x, train=False))(x)


def tiny_demo_args(workdir, data_dir, steps: int, *flags: str) -> list[str]:
  """`resizer.main` arguments for the demo config on `fine_gratings/tiny`
  (prepared in `data_dir`) with `resnet_tiny`: seconds per run on a CPU."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return ['resizer.main', f'--config={root}/configs/demo.py',
          f'--workdir={workdir}', '--config.input.dataset=fine_gratings/tiny',
          f'--config.input.data_dir={data_dir}', '--config.input.batch_size=16',
          '--config.input.eval_batch_size=16', '--config.model.name=resnet_tiny',
          f'--config.total_steps={steps}', '--config.image_summary_every_steps=0',
          *flags]


def save_photo(path, height: int, width: int) -> None:
  """A random RGB photo of height x width, in the format `path` names."""
  Image.fromarray(np.random.default_rng(0).integers(
      0, 255, (height, width, 3), np.uint8)).save(path)

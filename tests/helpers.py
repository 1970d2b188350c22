"""Small utilities shared by the tests."""

import jax
import jax.numpy as jnp


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

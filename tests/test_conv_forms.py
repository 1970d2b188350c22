"""conv_forms computes lax's convolutions, and their gradients, by other routes."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from resizer.models import conv_forms

NHWC = ('NHWC', 'HWIO', 'NHWC')


def _lax(x, k, strides, padding):
  return lax.conv_general_dilated(x, k, strides, padding,
                                  dimension_numbers=NHWC)


def _forms(x, k, strides, padding):
  return conv_forms.conv_general_dilated(x, k, strides, padding,
                                         dimension_numbers=NHWC)


def _value_and_grads(conv, x, k, strides, padding):
  # A nonlinear loss, so that every output pixel gets its own cotangent.
  loss = lambda x, k: jnp.sum(jnp.sin(conv(x, k, strides, padding)))
  return conv(x, k, strides, padding), jax.grad(loss, (0, 1))(x, k)


def _primitives(x, k, strides, padding) -> str:
  # A fresh function each time: a cached trace would hide a switched form.
  return str(jax.make_jaxpr(lambda x, k: _forms(x, k, strides, padding))(
      x, k))


CASES = {
    # name: (input shape, kernel shape, strides, padding, primitive taken)
    'pointwise 1x1': ((2, 9, 11, 16), (1, 1, 16, 16), (1, 1), 'SAME',
                      'dot_general'),
    'few outputs, 7x7 16→3 SAME': ((2, 13, 12, 16), (7, 7, 16, 3), (1, 1),
                                   'SAME', 'custom_vjp'),
    'few outputs, 3x5 asymmetric pads': ((1, 10, 9, 8), (3, 5, 8, 2), (1, 1),
                                         ((0, 2), (3, 1)), 'custom_vjp'),
    'stem 7x7/2 symmetric, even size': ((2, 32, 32, 3), (7, 7, 3, 16), (2, 2),
                                        ((3, 3), (3, 3)), 'custom_vjp'),
    'stem 7x7/2 symmetric, odd size': ((1, 33, 31, 3), (7, 7, 3, 16), (2, 2),
                                       ((3, 3), (3, 3)), 'custom_vjp'),
    'stem 3x3/2 TF SAME': ((2, 18, 17, 3), (3, 3, 3, 8), (2, 2), 'SAME',
                           'custom_vjp'),
    'stem 5x5/3 uneven pads': ((1, 20, 19, 3), (5, 5, 3, 8), (3, 3),
                               ((0, 2), (2, 1)), 'custom_vjp'),
    'plain: many channels both sides': ((1, 8, 8, 8), (3, 3, 8, 8), (1, 1),
                                        'SAME', 'conv_general_dilated'),
}


@pytest.mark.slow
@pytest.mark.parametrize('name', list(CASES))
def test_each_form_matches_lax_in_value_and_both_gradients(name):
  x_shape, k_shape, strides, padding, primitive = CASES[name]
  kx, kk = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, x_shape)
  k = jax.random.normal(kk, k_shape) / np.sqrt(np.prod(k_shape[:3]))
  assert primitive in _primitives(x, k, strides, padding)
  want, (want_dx, want_dk) = _value_and_grads(_lax, x, k, strides, padding)
  got, (got_dx, got_dk) = _value_and_grads(_forms, x, k, strides, padding)
  for w, g in ((want, got), (want_dx, got_dx), (want_dk, got_dk)):
    assert g.shape == w.shape and g.dtype == w.dtype
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * np.abs(w).max())


@pytest.mark.slow
def test_bfloat16_keeps_dtypes_and_agrees_to_bf16_precision():
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3), jnp.bfloat16)
  k = (jax.random.normal(jax.random.key(2), (7, 7, 3, 8)) / 12).astype(
      jnp.bfloat16)
  want, want_grads = _value_and_grads(_lax, x, k, (2, 2), ((3, 3), (3, 3)))
  got, got_grads = _value_and_grads(_forms, x, k, (2, 2), ((3, 3), (3, 3)))
  for w, g in zip((want, *want_grads), (got, *got_grads)):
    assert g.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.float32(g), np.float32(w), rtol=0.05,
                               atol=0.02 * float(jnp.abs(w).max()))


def test_through_nn_conv_the_parameters_are_nn_convs_own():
  x = jnp.ones((1, 12, 12, 16))
  plain = nn.Conv(3, (7, 7), padding='SAME')
  forms = nn.Conv(3, (7, 7), padding='SAME',
                  conv_general_dilated=conv_forms.conv_general_dilated)
  params = plain.init(jax.random.key(0), x)
  assert (jax.tree.map(jnp.shape, forms.init(jax.random.key(0), x))
          == jax.tree.map(jnp.shape, params))
  np.testing.assert_allclose(forms.apply(params, x), plain.apply(params, x),
                             rtol=1e-5, atol=1e-5)


def test_dilated_grouped_or_other_layouts_go_to_lax_untouched():
  x = jnp.ones((1, 9, 9, 4))
  k = jnp.ones((3, 3, 2, 4))
  grouped = jax.make_jaxpr(lambda x, k: conv_forms.conv_general_dilated(
      x, k, (2, 2), 'SAME', dimension_numbers=NHWC, feature_group_count=2))
  assert 'custom_vjp' not in str(grouped(x, k))
  k = jnp.ones((3, 3, 4, 3))
  dilated = jax.make_jaxpr(lambda x, k: conv_forms.conv_general_dilated(
      x, k, (1, 1), 'SAME', rhs_dilation=(2, 2), dimension_numbers=NHWC))
  assert 'custom_vjp' not in str(dilated(x, k))


def _convolutions(conv, platform, x, k, strides, padding) -> list[str]:
  """The operand and result types of every convolution and matrix product in
  the gradient program, as lowered for `platform`."""
  loss = lambda x, k: jnp.sum(jnp.sin(conv(x, k, strides, padding)))
  exported = jax.export.export(jax.jit(jax.grad(loss, (0, 1))),
                               platforms=[platform])(x, k)
  return sorted(re.findall(
      r'stablehlo\.(convolution|dot_general)\b.* : (\(.*?\) -> tensor<\S*>)',
      exported.mlir_module()))


@pytest.mark.parametrize('platform', ['cuda', 'tpu'])
def test_lowered_for_an_accelerator_it_is_lax_itself(platform):
  for name in ('pointwise 1x1', 'few outputs, 7x7 16→3 SAME',
               'stem 7x7/2 symmetric, even size'):
    x_shape, k_shape, strides, padding, _ = CASES[name]
    x, k = jnp.ones(x_shape), jnp.ones(k_shape)
    want = _convolutions(_lax, platform, x, k, strides, padding)
    assert _convolutions(_forms, platform, x, k, strides, padding) == want
    # The same program lowered for CPU takes the form.
    assert _convolutions(_forms, 'cpu', x, k, strides, padding) != want

"""Convolutions rewritten into forms that XLA's CPU backend runs well.

On XLA:CPU some convolutions run far below the backend's usual FLOP rate
(`benchmarks/README.md` has the profile and the measurements):

- a 1x1 convolution's weight gradient is emitted as a convolution whose
  operands are first transposed (full copies of the activations); as a plain
  matrix product it needs none. This form alone makes a ResNet-50 training
  step on CPU about a third faster;
- a convolution with few output channels (the learned resizer's 7x7, 16→3
  output layer) makes a matrix product only 3 columns wide; a (kh x 1)
  convolution to kw*3 channels followed by kw shifted adds does the same
  arithmetic in a wider product;
- a strided convolution's input gradient (a backbone stem's, which only a
  learned resizer needs) is a transposed convolution that XLA:CPU runs on a
  zero-dilated input; the same gradient is one stride-1 convolution of the
  output gradient to stride² x 3 channels and a depth-to-space.

`conv_general_dilated` is a drop-in for `lax.conv_general_dilated`, passed
to `nn.Conv(conv_general_dilated=...)` (`common.CONV_IMPLS['cpu_forms']`,
which a config selects with `config.model.conv_impl`), so parameters and
checkpoints are those of a plain `nn.Conv`. Every form computes the same
sums as lax, up to floating-point reassociation (tests/test_conv_forms.py).
They apply to the CPU program only: the choice is made when the program is
lowered (`lax.platform_dependent`), so a program lowered for several
platforms at once (`resizer.export --platforms=cpu,cuda`) gets the forms
in its CPU branch and `lax.conv_general_dilated` everywhere else.
"""

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ('NHWC', 'HWIO', 'NHWC')
# At most this many channels count as "few": the RGB side of a convolution.
FEW_CHANNELS = 4


def _conv(x, kernel, strides, pads):
  return lax.conv_general_dilated(x, kernel, strides, pads,
                                  dimension_numbers=_NHWC)


def pointwise(x: jnp.ndarray, kernel: jnp.ndarray, precision=None
              ) -> jnp.ndarray:
  """A 1x1, stride-1 NHWC convolution as a (pixels x cin) @ (cin x cout)
  matrix product."""
  cin, cout = kernel.shape[-2:]
  y = jnp.dot(x.reshape(-1, cin), kernel.reshape(cin, cout),
              precision=precision)
  return y.reshape(x.shape[:-1] + (cout,))


def _columns_conv(x, kernel, pads):
  """Stride-1 NHWC convolution through a (kh x 1) convolution to kw*cout
  channels (one group of cout per kernel column), then kw shifted adds."""
  kh, kw, cin, cout = kernel.shape
  columns = kernel.transpose(0, 2, 1, 3).reshape(kh, 1, cin, kw * cout)
  z = _conv(x, columns, (1, 1), pads)
  z = z.reshape(z.shape[:3] + (kw, cout))
  width = z.shape[2] - kw + 1
  return sum(z[:, :, j:j + width, j] for j in range(kw))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def few_output_conv(x: jnp.ndarray, kernel: jnp.ndarray,
                    pads: tuple[tuple[int, int], tuple[int, int]]
                    ) -> jnp.ndarray:
  """A stride-1 NHWC convolution with few output channels. The forward pass
  takes the column form; the gradients are lax's own (the column form's
  weight gradient is slow on CPU)."""
  return _columns_conv(x, kernel, pads)


def _few_output_fwd(x, kernel, pads):
  return _columns_conv(x, kernel, pads), (x, kernel)


def _few_output_bwd(pads, residuals, g):
  x, kernel = residuals
  _, vjp = jax.vjp(lambda a, b: _conv(a, b, (1, 1), pads), x, kernel)
  return vjp(g)


few_output_conv.defvjp(_few_output_fwd, _few_output_bwd)


def strided_input_grad(g: jnp.ndarray, kernel: jnp.ndarray,
                       in_size: Sequence[int], strides: Sequence[int],
                       pads: Sequence[tuple[int, int]]) -> jnp.ndarray:
  """The input gradient of a strided NHWC convolution, given the output
  gradient `g`, as one stride-1 convolution and a depth-to-space.

  Input pixel t (padded coordinate u = t + pad) receives g[q - m] * w[p + s*m]
  for every m, where u = s*q + p: for each phase p that is a stride-1
  correlation of g with the phase's kernel taps, flipped. All s*s phases
  come out of one convolution as s*s*cin channels.
  """
  kh, kw, cin, cout = kernel.shape
  (sh, sw), ((low_h, _), (low_w, _)) = strides, pads
  mh, mw = -(-kh // sh), -(-kw // sw)  # Taps per phase.
  k = jnp.pad(kernel, ((0, mh * sh - kh), (0, mw * sw - kw), (0, 0), (0, 0)))
  k = k.reshape(mh, sh, mw, sw, cin, cout)[::-1, :, ::-1]
  k = k.transpose(0, 2, 5, 1, 3, 4).reshape(mh, mw, cout, sh * sw * cin)
  (h, w), (ho, wo) = in_size, g.shape[1:3]
  qh, qw = (h - 1 + low_h) // sh + 1, (w - 1 + low_w) // sw + 1
  z = _conv(g, k, (1, 1), ((mh - 1, max(qh - ho, 0)), (mw - 1, max(qw - wo, 0))))
  n, zh, zw, _ = z.shape
  z = z.reshape(n, zh, zw, sh, sw, cin).transpose(0, 1, 3, 2, 4, 5)
  z = z.reshape(n, zh * sh, zw * sw, cin)
  return z[:, low_h:low_h + h, low_w:low_w + w]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def strided_conv(x: jnp.ndarray, kernel: jnp.ndarray,
                 strides: tuple[int, int],
                 pads: tuple[tuple[int, int], tuple[int, int]]
                 ) -> jnp.ndarray:
  """lax's strided NHWC convolution, with its input gradient taken by
  `strided_input_grad`."""
  return _conv(x, kernel, strides, pads)


def _strided_fwd(x, kernel, strides, pads):
  return _conv(x, kernel, strides, pads), (x, kernel)


def _strided_bwd(strides, pads, residuals, g):
  x, kernel = residuals
  _, kernel_vjp = jax.vjp(lambda k: _conv(x, k, strides, pads), kernel)
  dx = strided_input_grad(g, kernel, x.shape[1:3], strides, pads)
  return dx.astype(x.dtype), kernel_vjp(g)[0]


strided_conv.defvjp(_strided_fwd, _strided_bwd)


def _is_one(value) -> bool:
  return value is None or all(v == 1 for v in (
      value if isinstance(value, Sequence) else (value,)))


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, precision=None,
                         preferred_element_type=None) -> jnp.ndarray:
  """`lax.conv_general_dilated`, taking a faster form on CPU where one
  applies."""
  def plain(x, kernel):
    return lax.conv_general_dilated(
        x, kernel, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, precision=precision,
        preferred_element_type=preferred_element_type)

  form = _cpu_form(lhs.shape, rhs.shape, window_strides, padding,
                   lhs_dilation, rhs_dilation, dimension_numbers,
                   feature_group_count, precision, preferred_element_type)
  if form is None:
    return plain(lhs, rhs)
  # Other backends' convolution libraries have no such gaps that we have
  # measured, and a reshape into a matrix can cost a relayout on TPU.
  return lax.platform_dependent(lhs, rhs, cpu=form, default=plain)


def _cpu_form(lhs_shape, rhs_shape, window_strides, padding, lhs_dilation,
              rhs_dilation, dimension_numbers, feature_group_count, precision,
              preferred_element_type):
  """The (x, kernel) -> output form for this convolution, or None for lax's."""
  if (len(lhs_shape) != 4
      or feature_group_count != 1
      or preferred_element_type is not None
      or not (_is_one(lhs_dilation) and _is_one(rhs_dilation))
      or lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
      != lax.conv_dimension_numbers(lhs_shape, rhs_shape, _NHWC)):
    return None
  strides = tuple(window_strides)
  kh, kw, cin, cout = rhs_shape
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs_shape[1:3], (kh, kw), strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  if (kh, kw) == (1, 1) and strides == (1, 1) and pads == ((0, 0), (0, 0)):
    return lambda x, kernel: pointwise(x, kernel, precision)
  if precision is not None:
    return None
  if strides == (1, 1) and kw > 1 and cout <= FEW_CHANNELS < cin:
    return lambda x, kernel: few_output_conv(x, kernel, pads)
  if strides != (1, 1) and cin <= FEW_CHANNELS < cout:
    return lambda x, kernel: strided_conv(x, kernel, strides, pads)
  return None

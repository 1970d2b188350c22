"""Conventions shared by every backbone in the zoo.

Every backbone is a `flax.linen` module with the fields `num_classes`,
`dtype` (the compute dtype; parameters stay float32) and `bn_axis_name`
(the mesh axis over which BatchNorm statistics are synchronised, or None for
statistics over whatever batch the module sees), and is called as
`module(images, train=bool)` on NHWC images of any spatial size its pooling
allows. It returns logits in `dtype`; the composite model casts them to
float32.
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from resizer.models import conv_forms

ModuleDef = Any
Dtype = Any


def batch_norm(train: bool, dtype: Dtype, axis_name: str | None, *,
               momentum: float = 0.9, epsilon: float = 1e-5,
               **kwargs) -> Callable[..., nn.BatchNorm]:
  """A BatchNorm constructor with the zoo's defaults (torchvision's: eps 1e-5,
  running-average momentum 0.1, i.e. flax momentum 0.9)."""
  return functools.partial(
      nn.BatchNorm, use_running_average=not train, momentum=momentum,
      epsilon=epsilon, dtype=dtype, axis_name=axis_name, **kwargs)


# `config.model.conv_impl`: the convolution module every model layer is
# built with (each backbone and the learned resizer take it as their `conv`
# field). 'lax' is nn.Conv itself. 'cpu_forms' is nn.Conv with the same
# parameters, computed in a CPU program through conv_forms' custom_vjp forms
# (a ResNet-50 training step on XLA:CPU about a third faster), and as
# nn.Conv in a GPU/TPU program. It is for CPU runs only: forward-mode
# autodiff (jax.jvp, jax.jacfwd) fails through a custom_vjp on CPU.
CONV_IMPLS: dict[str, ModuleDef] = {
    'lax': nn.Conv,
    'cpu_forms': functools.partial(
        nn.Conv, conv_general_dilated=conv_forms.conv_general_dilated),
}

PADDINGS = ('symmetric', 'tf_same')


def same_padding(kernel_size: int, mode: str = 'symmetric'
                 ) -> str | Sequence[tuple[int, int]]:
  """Padding that keeps the size at stride 1 (and halves it, rounding up, at
  stride 2).

  'symmetric' pads k//2 on each side, as torchvision does. 'tf_same' is
  TensorFlow's 'SAME', which Keras' MobileNetV2 and EfficientNet use (as
  `padding='same'` or `correct_pad` + 'valid'): identical at stride 1, but
  at stride 2 on an even size it pads (k//2 - 1, k//2), so weights trained
  one way see a one-pixel shift the other way.
  """
  if mode == 'tf_same':
    return 'SAME'
  if mode != 'symmetric':
    raise ValueError(f'padding={mode!r} is invalid; expected one of '
                     f'{list(PADDINGS)}.')
  p = kernel_size // 2
  return ((p, p), (p, p))


def global_avg_pool(x: jnp.ndarray) -> jnp.ndarray:
  """Mean over the spatial axes: works at any input resolution."""
  return jnp.mean(x, axis=(1, 2))


# torchvision initialises convolutions with kaiming_normal(mode='fan_out');
# for a grouped kernel (k, k, in/groups, out) both count fan_out as k*k*out.
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None
                   ) -> int:
  """torchvision's `_make_divisible`: round to the nearest multiple of
  `divisor`, never below `min_value` (default `divisor`) nor below 90% of v."""
  if min_value is None:
    min_value = divisor
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v

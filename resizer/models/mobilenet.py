"""MobileNetV2 (torchvision's `mobilenet_v2` layout, as Keras' MobileNetV2).

MobileNetV2 at width 1.0 has 3,504,872 trainable parameters at 1000 classes
(torchvision's figure) and 34,112 BatchNorm statistics (mean and variance of
17,056 channels).

Layout: 3x3/2 stem to 32 channels; inverted residual blocks (1x1 expansion,
3x3 depthwise, linear 1x1 projection; no expansion convolution when the
expand ratio is 1; identity shortcut when stride 1 and widths match); a 1x1
convolution to 1280 channels; global average pooling, dropout 0.2 and the
classifier. ReLU6 throughout.

BatchNorm: torchvision uses plain `nn.BatchNorm2d` (eps 1e-5, torch momentum
0.1, i.e. flax 0.9) and symmetric padding. Keras' MobileNetV2 uses eps 1e-3,
momentum 0.999 (same convention as flax) and TensorFlow's 'SAME' padding;
`config.model.convention='keras'` selects those (see conventions.py).
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from resizer.models import conventions
from resizer.models.common import (Dtype, ModuleDef, batch_norm,
                                   conv_kernel_init, global_avg_pool,
                                   make_divisible, same_padding)

# (expand ratio t, output channels c, repeats n, first stride s), width 1.0.
MOBILENET_V2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
  """[1x1 expand →] 3x3 depthwise (strided) → linear 1x1 project."""
  out_channels: int
  expand_ratio: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  padding: str = 'symmetric'

  @nn.compact
  def __call__(self, x):
    in_channels = x.shape[-1]
    hidden = int(round(in_channels * self.expand_ratio))
    y = x
    if self.expand_ratio != 1:
      y = self.conv(hidden, (1, 1), name='conv_expand')(y)
      y = nn.relu6(self.norm(name='bn_expand')(y))
    y = self.conv(hidden, (3, 3), (self.strides,) * 2,
                  padding=same_padding(3, self.padding),
                  feature_group_count=hidden, name='conv_dw')(y)
    y = nn.relu6(self.norm(name='bn_dw')(y))
    y = self.conv(self.out_channels, (1, 1), name='conv_project')(y)
    y = self.norm(name='bn_project')(y)
    if self.strides == 1 and in_channels == self.out_channels:
      y = x + y
    return y


class MobileNetV2(nn.Module):
  """MobileNetV2 for classification at any input size."""
  num_classes: int = 1000
  width_mult: float = 1.0
  inverted_residual_setting: Sequence[tuple[int, int, int, int]] = (
      MOBILENET_V2_SETTING)
  round_nearest: int = 8
  stem_channels: int = 32
  # torchvision: 1280 * max(1, width_mult), rounded; never narrowed.
  last_channel: int = 1280
  dropout_rate: float = 0.2
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None
  bn_epsilon: float = 1e-5
  bn_momentum: float = 0.9  # flax convention; torch momentum 0.1
  padding: str = 'symmetric'  # or 'tf_same' (Keras)
  conv: ModuleDef = nn.Conv  # common.CONV_IMPLS

  @nn.compact
  def __call__(self, x, train: bool = True):
    conv = functools.partial(self.conv, use_bias=False, dtype=self.dtype,
                             kernel_init=conv_kernel_init)
    norm = batch_norm(train, self.dtype, self.bn_axis_name,
                      momentum=self.bn_momentum, epsilon=self.bn_epsilon)
    div = functools.partial(make_divisible, divisor=self.round_nearest)

    x = conv(div(self.stem_channels * self.width_mult), (3, 3), (2, 2),
             padding=same_padding(3, self.padding), name='conv_stem')(x)
    x = nn.relu6(norm(name='bn_stem')(x))
    for i, (t, c, n, s) in enumerate(self.inverted_residual_setting):
      for j in range(n):
        x = InvertedResidual(div(c * self.width_mult), t, conv=conv,
                             norm=norm, strides=s if j == 0 else 1,
                             padding=self.padding,
                             name=f'stage{i + 1}_block{j + 1}')(x)
    last = div(self.last_channel * max(1.0, self.width_mult))
    x = conv(last, (1, 1), name='conv_head')(x)
    x = nn.relu6(norm(name='bn_head')(x))
    x = global_avg_pool(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train,
                   name='dropout')(x)
    return nn.Dense(self.num_classes, dtype=self.dtype,
                    kernel_init=nn.initializers.normal(0.01), name='head')(x)


# Test-only: two stages (one block without expansion, one with a residual
# block), half width, 64-channel head; seconds to compile on a CPU.
MobileNetV2Tiny = functools.partial(
    MobileNetV2, width_mult=0.5, inverted_residual_setting=((1, 16, 1, 1),
                                                            (6, 24, 2, 2)),
    last_channel=64)


# ------------------------------------------ names in torchvision and Keras
# Both number blocks over the whole network, and name a block's layers by
# whether it has an expansion convolution: the layout says.


def _torch_block(block: str, leaf: str, layout: conventions.Layout) -> str:
  if block in ('conv_head', 'bn_head'):  # The module after the last block.
    return conventions.torch_features_head(block, layout['num_blocks'])
  expands = block in layout['expanding']
  parts = (['conv.0.0', 'conv.0.1'] if expands else []) + [
      f'conv.{int(expands)}.0', f'conv.{int(expands)}.1',
      f'conv.{1 + int(expands)}', f'conv.{2 + int(expands)}']
  names = (['conv_expand', 'bn_expand'] if expands else []) + [
      'conv_dw', 'bn_dw', 'conv_project', 'bn_project']
  return f'features.{layout["order"][block] + 1}.' + dict(zip(names, parts))[
      leaf]


def _keras_block(block: str, leaf: str, layout: conventions.Layout) -> str:
  index = layout['order'][block]
  prefix = 'expanded_conv' if index == 0 else f'block_{index}'
  suffix = {'conv_expand': 'expand', 'bn_expand': 'expand_BN',
            'conv_dw': 'depthwise', 'bn_dw': 'depthwise_BN',
            'conv_project': 'project', 'bn_project': 'project_BN'}[leaf]
  return f'{prefix}_{suffix}'


# Keras' MobileNetV2: 'tf' preprocessing (x / 127.5 - 1).
WEIGHTS = conventions.ForeignWeights(
    torch_fixed=conventions.TORCH_FEATURES_FIXED,
    torch_block=_torch_block,
    keras_fixed=dict(conv_stem='Conv1', bn_stem='bn_Conv1',
                     conv_head='Conv_1', bn_head='Conv_1_bn',
                     head='predictions'),
    keras_block=_keras_block,
    keras=conventions.Convention(
        dict(bn_epsilon=1e-3, bn_momentum=0.999, padding='tf_same'),
        'inception'))

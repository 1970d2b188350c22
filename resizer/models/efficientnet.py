"""EfficientNet-B0 (torchvision's `efficientnet_b0` layout, as Keras'
EfficientNetB0).

EfficientNet-B0 has 5,288,548 trainable parameters at 1000 classes
(torchvision's figure) and 42,016 BatchNorm statistics (mean and variance of
21,008 channels).

Layout: 3x3/2 stem to 32 channels; MBConv blocks (1x1 expansion, depthwise
k x k, squeeze-excitation, linear 1x1 projection; no expansion convolution
when the expand ratio is 1; identity shortcut, with stochastic depth on the
residual branch, when stride 1 and widths match); a 1x1 convolution to
4 x 320 = 1280 channels; global average pooling, dropout 0.2 and the
classifier. SiLU throughout. Squeeze-excitation has max(1, block input
channels // 4) channels, 1x1 convolutions with bias and a sigmoid gate.
Stochastic depth drops whole examples' residual branches with rate
0.2 * block_index / num_blocks (block_index counting from 0 over the network).

BatchNorm: torchvision's `efficientnet_b0` uses plain `nn.BatchNorm2d`
(eps 1e-5, torch momentum 0.1, i.e. flax 0.9); only B5-B7 and V2 pass
eps 1e-3 (and B5-B7 momentum 0.01). Its padding is symmetric. Keras'
EfficientNetB0 uses eps 1e-3, momentum 0.99 and TensorFlow's 'SAME' padding;
`config.model.convention='keras'` selects those (see conventions.py). Keras'
model also normalises the input inside the network (Rescaling +
Normalization layers, ImageNet statistics), which is not part of this module:
the composite model normalises.
"""

import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from resizer.models import conventions
from resizer.models.common import (Dtype, ModuleDef, batch_norm,
                                   conv_kernel_init, global_avg_pool,
                                   make_divisible, same_padding)

# (expand ratio, kernel, first stride, output channels, repeats), width and
# depth 1.0; the input channels of a stage are the previous stage's output
# (the stem's for the first).
EFFICIENTNET_B0_BLOCKS = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


def dense_init_uniform(key, shape, dtype=jnp.float32):
  """torchvision's EfficientNet classifier init: U(-r, r), r = 1/sqrt(out)."""
  r = 1.0 / math.sqrt(shape[-1])
  return jax.random.uniform(key, shape, dtype, -r, r)


class SqueezeExcitation(nn.Module):
  """Channel gate: mean → 1x1 (bias) → SiLU → 1x1 (bias) → sigmoid."""
  squeeze_channels: int
  conv: ModuleDef

  @nn.compact
  def __call__(self, x):
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = self.conv(self.squeeze_channels, (1, 1), use_bias=True, name='fc1')(s)
    s = self.conv(x.shape[-1], (1, 1), use_bias=True, name='fc2')(nn.silu(s))
    return x * nn.sigmoid(s)


class MBConv(nn.Module):
  """[1x1 expand →] depthwise k x k (strided) → SE → linear 1x1 project."""
  out_channels: int
  expand_ratio: int
  kernel_size: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  stochastic_depth_rate: float = 0.0
  padding: str = 'symmetric'

  @nn.compact
  def __call__(self, x, train: bool):
    in_channels = x.shape[-1]
    expanded = make_divisible(in_channels * self.expand_ratio, 8)
    y = x
    if expanded != in_channels:
      y = self.conv(expanded, (1, 1), name='conv_expand')(y)
      y = nn.silu(self.norm(name='bn_expand')(y))
    k = self.kernel_size
    y = self.conv(expanded, (k, k), (self.strides,) * 2,
                  padding=same_padding(k, self.padding),
                  feature_group_count=expanded,
                  name='conv_dw')(y)
    y = nn.silu(self.norm(name='bn_dw')(y))
    y = SqueezeExcitation(max(1, in_channels // 4), conv=self.conv,
                          name='se')(y)
    y = self.conv(self.out_channels, (1, 1), name='conv_project')(y)
    y = self.norm(name='bn_project')(y)
    if self.strides == 1 and in_channels == self.out_channels:
      # Stochastic depth ("row" mode): drop the branch per example, rescale
      # survivors by 1/(1 - rate).
      y = nn.Dropout(self.stochastic_depth_rate, broadcast_dims=(1, 2, 3),
                     deterministic=not train, name='stochastic_depth')(y)
      y = x + y
    return y


class EfficientNet(nn.Module):
  """EfficientNet (V1) for classification at any input size."""
  num_classes: int = 1000
  blocks: Sequence[tuple[int, int, int, int, int]] = EFFICIENTNET_B0_BLOCKS
  width_mult: float = 1.0
  depth_mult: float = 1.0
  stem_channels: int = 32
  # None: 4 x the last block's output channels (1280 for B0).
  head_channels: int | None = None
  dropout_rate: float = 0.2
  stochastic_depth_rate: float = 0.2
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
    width = lambda c: make_divisible(c * self.width_mult, 8)
    depth = lambda n: int(math.ceil(n * self.depth_mult))

    x = conv(width(self.stem_channels), (3, 3), (2, 2),
             padding=same_padding(3, self.padding), name='conv_stem')(x)
    x = nn.silu(norm(name='bn_stem')(x))
    total = sum(depth(b[4]) for b in self.blocks)
    block_id = 0
    for i, (expand, kernel, stride, out, repeats) in enumerate(self.blocks):
      for j in range(depth(repeats)):
        x = MBConv(width(out), expand, kernel, conv=conv, norm=norm,
                   strides=stride if j == 0 else 1, padding=self.padding,
                   stochastic_depth_rate=(self.stochastic_depth_rate *
                                          block_id / total),
                   name=f'stage{i + 1}_block{j + 1}')(x, train)
        block_id += 1
    head = self.head_channels or 4 * width(self.blocks[-1][3])
    x = conv(head, (1, 1), name='conv_head')(x)
    x = nn.silu(norm(name='bn_head')(x))
    x = global_avg_pool(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train,
                   name='dropout')(x)
    return nn.Dense(self.num_classes, dtype=self.dtype,
                    kernel_init=dense_init_uniform, name='head')(x)


EfficientNetB0 = functools.partial(EfficientNet, blocks=EFFICIENTNET_B0_BLOCKS,
                                   width_mult=1.0, depth_mult=1.0)
# Test-only: the first two stages (a block without expansion, a strided block
# and a residual block with stochastic depth), half width, 64-channel head;
# seconds to compile on a CPU.
EfficientNetTiny = functools.partial(
    EfficientNet, blocks=EFFICIENTNET_B0_BLOCKS[:2], width_mult=0.5,
    head_channels=64)


# ------------------------------------------ names in torchvision and Keras


def _torch_block(block: str, leaf: str, layout: conventions.Layout) -> str:
  if block in ('conv_head', 'bn_head'):  # The module after the last stage.
    return conventions.torch_features_head(block, layout['num_stages'])
  stage, index = conventions.block_index(block)
  e = int(block in layout['expanding'])
  parts = {'conv_expand': 'block.0.0', 'bn_expand': 'block.0.1',
           'conv_dw': f'block.{e}.0', 'bn_dw': f'block.{e}.1',
           'se/fc1': f'block.{e + 1}.fc1', 'se/fc2': f'block.{e + 1}.fc2',
           'conv_project': f'block.{e + 2}.0',
           'bn_project': f'block.{e + 2}.1'}
  return f'features.{stage}.{index - 1}.{parts[leaf]}'


def _keras_block(block: str, leaf: str, layout: conventions.Layout) -> str:
  del layout
  stage, index = conventions.block_index(block)
  suffix = {'conv_expand': 'expand_conv', 'bn_expand': 'expand_bn',
            'conv_dw': 'dwconv', 'bn_dw': 'bn', 'se/fc1': 'se_reduce',
            'se/fc2': 'se_expand', 'conv_project': 'project_conv',
            'bn_project': 'project_bn'}[leaf]
  return f'block{stage}{chr(ord("a") + index - 1)}_{suffix}'


def _check_keras_normalization(tensors: conventions.Tensors, path: str
                               ) -> conventions.Tensors:
  """Drops Keras' in-network Normalization layer, which must hold the
  ImageNet statistics the composite model normalises with."""
  tensors = dict(tensors)
  mean, std = conventions.NORMALIZATIONS['imagenet']
  got_mean = tensors.pop('normalization/mean', None)
  got_var = tensors.pop('normalization/variance', None)
  tensors.pop('normalization/count', None)
  # Keras' own ImageNet file stores the std as the variance and rescales
  # after; a model normalised with var = std**2 computes the same.
  if got_mean is None or not np.allclose(got_mean, mean, atol=1e-3) or not (
      np.allclose(got_var, np.square(std), atol=1e-3)
      or np.allclose(got_var, std, atol=1e-3)):
    raise conventions.WeightsMismatch(
        f'{path}: the Normalization layer holds mean={got_mean}, '
        f'variance={got_var}; only ImageNet statistics (mean {mean}, '
        f'variance {np.square(std).round(4)} or {std}) match the '
        'normalisation our models apply.')
  return tensors


WEIGHTS = conventions.ForeignWeights(
    torch_fixed=conventions.TORCH_FEATURES_FIXED,
    torch_block=_torch_block,
    keras_fixed=dict(conv_stem='stem_conv', bn_stem='stem_bn',
                     conv_head='top_conv', bn_head='top_bn',
                     head='predictions'),
    keras_block=_keras_block,
    keras=conventions.Convention(
        dict(bn_epsilon=1e-3, bn_momentum=0.99, padding='tf_same')),
    fold_keras=_check_keras_normalization)

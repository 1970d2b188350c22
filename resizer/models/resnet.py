"""ResNet v1.5 (torchvision layout: the stride sits on the 3x3 convolution),
or v1 (Keras' ResNet50: the stride sits on the first 1x1) with
`stride_in_1x1=True`.

ResNet-18 has 11,689,512 and ResNet-50 25,557,032 trainable parameters at
1000 classes, as torchvision's `resnet18` / `resnet50`.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from resizer.models import conventions
from resizer.models.common import (Dtype, ModuleDef, batch_norm,
                                   global_avg_pool, same_padding)


class BasicBlock(nn.Module):
  """Two 3x3 convolutions (ResNet-18/34)."""
  filters: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (3, 3), (self.strides,) * 2,
                  padding=same_padding(3), name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.filters, (3, 3), padding=same_padding(3),
                  name='conv2')(y)
    # Zero-initialised scale: each block starts as the identity.
    y = self.norm(scale_init=nn.initializers.zeros, name='bn2')(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters, (1, 1), (self.strides,) * 2,
                           name='downsample_conv')(residual)
      residual = self.norm(name='downsample_bn')(residual)
    return nn.relu(residual + y)


class BottleneckBlock(nn.Module):
  """1x1 → 3x3 (strided) → 1x1 with 4x expansion (ResNet-50 v1.5); with
  `stride_in_1x1` the first 1x1 is strided instead (v1)."""
  filters: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  stride_in_1x1: bool = False

  @nn.compact
  def __call__(self, x):
    residual = x
    s1, s3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
    y = self.conv(self.filters, (1, 1), (s1, s1), name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.filters, (3, 3), (s3, s3),
                  padding=same_padding(3), name='conv2')(y)
    y = nn.relu(self.norm(name='bn2')(y))
    y = self.conv(self.filters * 4, (1, 1), name='conv3')(y)
    y = self.norm(scale_init=nn.initializers.zeros, name='bn3')(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters * 4, (1, 1), (self.strides,) * 2,
                           name='downsample_conv')(residual)
      residual = self.norm(name='downsample_bn')(residual)
    return nn.relu(residual + y)


class ResNet(nn.Module):
  """ResNet for classification at any input size of at least 32x32."""
  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  num_classes: int = 1000
  num_filters: int = 64
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None
  bn_epsilon: float = 1e-5
  bn_momentum: float = 0.9  # flax convention; torch momentum 0.1
  stride_in_1x1: bool = False  # True: v1 (Keras); bottleneck blocks only
  conv: ModuleDef = nn.Conv  # common.CONV_IMPLS

  @nn.compact
  def __call__(self, x, train: bool = True):
    conv = functools.partial(self.conv, use_bias=False, dtype=self.dtype)
    norm = batch_norm(train, self.dtype, self.bn_axis_name,
                      momentum=self.bn_momentum, epsilon=self.bn_epsilon)
    block_cls = self.block_cls
    if self.stride_in_1x1:
      if block_cls is not BottleneckBlock:
        raise ValueError('stride_in_1x1 applies to bottleneck ResNets only.')
      block_cls = functools.partial(block_cls, stride_in_1x1=True)
    x = conv(self.num_filters, (7, 7), (2, 2), padding=same_padding(7),
             name='conv_stem')(x)
    x = nn.relu(norm(name='bn_stem')(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=same_padding(3))
    for i, block_size in enumerate(self.stage_sizes):
      for j in range(block_size):
        strides = 2 if i > 0 and j == 0 else 1
        x = block_cls(self.num_filters * 2**i, conv=conv, norm=norm,
                           strides=strides, name=f'stage{i + 1}_block{j + 1}')(x)
    x = global_avg_pool(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name='head')(x)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2),
                             block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                             block_cls=BottleneckBlock)
# The CPU demo's backbone: three stages of one basic block, 32 filters.
ResNetDemo = functools.partial(ResNet, stage_sizes=(1, 1, 1), block_cls=BasicBlock,
                               num_filters=32)
# The CPU demo's equal-compute backbone: the same three stages, 144 filters,
# so that the learned resizer (num_filters=8) adds about half of its cost,
# as the paper's resizer adds 20-24% to ResNet-50 (see configs/demo.py).
ResNetDemoWide = functools.partial(ResNet, stage_sizes=(1, 1, 1),
                                   block_cls=BasicBlock, num_filters=144)
# Test-only: one block per stage, 8 filters; seconds to compile on a CPU.
ResNetTiny = functools.partial(ResNet, stage_sizes=(1, 1), block_cls=BasicBlock,
                               num_filters=8)


# ------------------------------------------ names in torchvision and Keras


def _torch_block(block: str, leaf: str, layout: conventions.Layout) -> str:
  del layout
  stage, index = conventions.block_index(block)
  leaf = {'downsample_conv': 'downsample.0',
          'downsample_bn': 'downsample.1'}.get(leaf, leaf)
  return f'layer{stage}.{index - 1}.{leaf}'


def _keras_block(block: str, leaf: str, layout: conventions.Layout) -> str:
  del layout
  stage, index = conventions.block_index(block)
  suffix = {'conv1': '1_conv', 'bn1': '1_bn', 'conv2': '2_conv',
            'bn2': '2_bn', 'conv3': '3_conv', 'bn3': '3_bn',
            'downsample_conv': '0_conv', 'downsample_bn': '0_bn'}[leaf]
  return f'conv{stage + 1}_block{index}_{suffix}'


def _fold_keras_conv_biases(tensors: conventions.Tensors, path: str
                            ) -> conventions.Tensors:
  """Keras' ResNet50 convolutions carry biases, which the BatchNorm after
  each cancels in training; folded into its moving mean, exactly."""
  del path
  tensors = dict(tensors)
  for name in [n for n in tensors if n.endswith('_conv/bias')]:
    bn = name.replace('_conv/bias', '_bn/moving_mean')
    tensors[bn] = tensors[bn] - tensors.pop(name)
  return tensors


# Keras' ResNet50 is v1 with its own BatchNorm constants and caffe
# preprocessing (whose BGR order the importer undoes in the stem kernel).
WEIGHTS = conventions.ForeignWeights(
    torch_fixed=dict(conv_stem='conv1', bn_stem='bn1', head='fc'),
    torch_block=_torch_block,
    keras_fixed=dict(conv_stem='conv1_conv', bn_stem='conv1_bn',
                     head='predictions'),
    keras_block=_keras_block,
    keras=conventions.Convention(
        dict(stride_in_1x1=True, bn_epsilon=1.001e-5, bn_momentum=0.99),
        'caffe'),
    fold_keras=_fold_keras_conv_biases)

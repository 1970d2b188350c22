"""DenseNet-121 (growth 32, blocks 6-12-24-16, bottleneck width 4x growth).

7,978,856 trainable parameters at 1000 classes, as torchvision's
`densenet121` and Keras' `DenseNet121` (whose total with BN statistics is
8,062,504).
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from resizer.models import conventions
from resizer.models.common import (Dtype, ModuleDef, batch_norm,
                                   global_avg_pool, same_padding)


class DenseLayer(nn.Module):
  """BN-ReLU-conv1x1 → BN-ReLU-conv3x3, concatenated to its input."""
  growth_rate: int
  bn_size: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.norm(name='bn1')(x))
    y = self.conv(self.bn_size * self.growth_rate, (1, 1), name='conv1')(y)
    y = nn.relu(self.norm(name='bn2')(y))
    y = self.conv(self.growth_rate, (3, 3), padding=same_padding(3),
                  name='conv2')(y)
    return jnp.concatenate([x, y], axis=-1)


class Transition(nn.Module):
  """BN-ReLU-conv1x1 halving the channels, then 2x2 average pooling."""
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.norm(name='bn')(x))
    y = self.conv(x.shape[-1] // 2, (1, 1), name='conv')(y)
    return nn.avg_pool(y, (2, 2), strides=(2, 2))


class DenseNet(nn.Module):
  """DenseNet-BC for classification at any input size of at least 32x32."""
  block_sizes: Sequence[int]
  growth_rate: int = 32
  num_init_features: int = 64
  bn_size: int = 4
  num_classes: int = 1000
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None
  bn_epsilon: float = 1e-5  # Keras: 1.001e-5
  bn_momentum: float = 0.9  # flax convention; torch momentum 0.1
  conv: ModuleDef = nn.Conv  # common.CONV_IMPLS

  @nn.compact
  def __call__(self, x, train: bool = True):
    conv = functools.partial(self.conv, use_bias=False, dtype=self.dtype)
    norm = batch_norm(train, self.dtype, self.bn_axis_name,
                      momentum=self.bn_momentum, epsilon=self.bn_epsilon)
    x = conv(self.num_init_features, (7, 7), (2, 2), padding=same_padding(7),
             name='conv_stem')(x)
    x = nn.relu(norm(name='bn_stem')(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=same_padding(3))
    for i, num_layers in enumerate(self.block_sizes):
      for j in range(num_layers):
        x = DenseLayer(self.growth_rate, self.bn_size, conv=conv, norm=norm,
                       name=f'block{i + 1}_layer{j + 1}')(x)
      if i != len(self.block_sizes) - 1:
        x = Transition(conv=conv, norm=norm, name=f'transition{i + 1}')(x)
    x = nn.relu(norm(name='bn_final')(x))
    x = global_avg_pool(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name='head')(x)


DenseNet121 = functools.partial(DenseNet, block_sizes=(6, 12, 24, 16))
# Test-only: two short blocks of growth 8.
DenseNetTiny = functools.partial(DenseNet, block_sizes=(2, 2), growth_rate=8,
                                 num_init_features=16)


# ------------------------------------------ names in torchvision and Keras


def _torch_block(block: str, leaf: str, layout: conventions.Layout) -> str:
  del layout
  if block.startswith('transition'):
    return f'features.{block}.' + {'bn': 'norm', 'conv': 'conv'}[leaf]
  index, layer = conventions.block_index(block)
  return (f'features.denseblock{index}.denselayer{layer}.' +
          {'bn1': 'norm1', 'conv1': 'conv1', 'bn2': 'norm2',
           'conv2': 'conv2'}[leaf])


def _keras_block(block: str, leaf: str, layout: conventions.Layout) -> str:
  del layout
  if block.startswith('transition'):
    return f'pool{conventions.block_index(block)[0] + 1}_{leaf}'
  index, layer = conventions.block_index(block)
  suffix = {'bn1': '0_bn', 'conv1': '1_conv', 'bn2': '1_bn',
            'conv2': '2_conv'}[leaf]
  return f'conv{index + 1}_block{layer}_{suffix}'


WEIGHTS = conventions.ForeignWeights(
    torch_fixed=dict(conv_stem='features.conv0', bn_stem='features.norm0',
                     bn_final='features.norm5', head='classifier'),
    torch_block=_torch_block,
    keras_fixed=dict(conv_stem='conv1_conv', bn_stem='conv1_bn',
                     bn_final='bn', head='predictions'),
    keras_block=_keras_block,
    keras=conventions.Convention(dict(bn_epsilon=1.001e-5, bn_momentum=0.99)))

"""Inception-v2 as TF-slim defines it (`research/slim/nets/inception_v2.py`:
`inception_v2_base`, `inception_v2`, `inception_v2_arg_scope` =
`inception_utils.inception_arg_scope`), at depth_multiplier 1.0.

Inception-v2 has 11,178,336 trainable parameters at 1000 classes (11,179,361
at slim's 1001) and 19,776 BatchNorm statistics (moving mean and variance of
9,888 channels); the breakdown is in `tests/test_inception.py`.

What slim builds, and this module with it:

* `Conv2d_1a_7x7` is `slim.separable_conv2d(inputs, 64, [7, 7],
  depth_multiplier=min(int(64 / 3), 8) = 8, stride=2)`: a 7x7/2 depthwise
  convolution to 3 * 8 = 24 channels (`depthwise_weights` [7, 7, 3, 8]), a 1x1
  pointwise convolution to 64 (`pointwise_weights` [1, 1, 24, 64]), then
  `biases` [64] and ReLU. The arg scope gives `normalizer_fn=slim.batch_norm`
  to `slim.conv2d` only, so this layer has a bias and NO BatchNorm.
  Here: flax's grouped kernel [7, 7, 1, 24] is slim's depthwise kernel
  reshaped (output channel q * 8 + r reads input channel q, as TF's).
* Every other convolution is `slim.conv2d` with no bias, BatchNorm
  `scale=False` (slim's default: a learned beta, no gamma), `center=True`,
  epsilon 0.001, decay 0.9997 (flax momentum 0.9997), then ReLU.
* Padding is 'SAME' (TF's, asymmetric for strided layers) everywhere, pools
  included; the 3x3/1 average pools in the Mixed blocks do not count padded
  values (TF's `avg_pool` semantics).
* Pools: MaxPool_2a_3x3/2, MaxPool_3a_3x3/2 and the reduction blocks'
  MaxPool_1a_3x3/2 are max pools; Branch_3 of every Mixed block is a 3x3/1
  average pool except Mixed_5c's, which is a MAX pool (MaxPool_0a_3x3).
* Head: slim pools with `AvgPool_1a` of kernel `min(7, H), min(7, W)`
  ('VALID'), which at 224x224 (a 7x7 map) is a global average pool; here it is
  always a global average pool (slim's `global_pool=True`), so any input of at
  least 32x32 gives (batch, num_classes). Then dropout (keep_prob 0.8, i.e.
  rate 0.2) and `Logits/Conv2d_1c_1x1`: a 1x1 convolution WITH bias, no
  BatchNorm, no activation.
* Initialisers: slim's `trunc_normal(stddev)` where the definition names one
  (1.0 on both kernels of Conv2d_1a_7x7, 0.1 on Conv2d_2b_1x1 and every
  Branch_3 projection, 0.09 on the 1x1 reductions in front of 3x3s), otherwise
  the arg scope's `variance_scaling_initializer()` (He, fan-in, truncated
  normal); biases and betas zero.

slim's `inception_v2` function defaults to num_classes=1000; slim's ImageNet
training and released checkpoints use 1001 (class 0 is background).

Not reproduced: slim's depth_multiplier / min_depth (always 1.0 here), the
fixed 7x7 'VALID' head pool at inputs larger than 224 (see above) and
`spatial_squeeze=False`.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from resizer.models.common import Dtype, ModuleDef, batch_norm

# slim's `variance_scaling_initializer()` (factor 2, FAN_IN, truncated normal
# of stddev sqrt(1.3 * 2 / fan_in)); jax corrects the truncation with
# 1 / 0.8796^2 = 1.2925 instead of 1.3.
he_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')


def trunc_normal(stddev: float):
  """slim's `trunc_normal(stddev)`: a normal of `stddev` truncated at 2
  standard deviations (jax's `truncated_normal` has the same semantics)."""
  return nn.initializers.truncated_normal(stddev)


def avg_pool_3x3(x: jnp.ndarray) -> jnp.ndarray:
  """TF's `avg_pool(x, 3, stride 1, 'SAME')`: padded cells are not counted."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding='SAME',
                     count_include_pad=False)


def max_pool_3x3(x: jnp.ndarray, stride: int = 1) -> jnp.ndarray:
  """TF's `max_pool(x, 3, stride, 'SAME')`."""
  return nn.max_pool(x, (3, 3), strides=(stride, stride), padding='SAME')


class ConvBN(nn.Module):
  """`slim.conv2d` under `inception_arg_scope`: convolution without bias →
  BatchNorm (beta only) → ReLU. Parameters `conv/kernel` (slim's `weights`)
  and `batch_norm/bias` (slim's `BatchNorm/beta`)."""
  features: int
  kernel_size: int
  norm: ModuleDef
  strides: int = 1
  stddev: float | None = None  # slim's trunc_normal(stddev); None: he_init
  dtype: Dtype = jnp.float32
  conv: ModuleDef = nn.Conv  # common.CONV_IMPLS

  @nn.compact
  def __call__(self, x):
    init = he_init if self.stddev is None else trunc_normal(self.stddev)
    x = self.conv(self.features, (self.kernel_size,) * 2,
                  (self.strides,) * 2, padding='SAME', use_bias=False,
                  dtype=self.dtype, kernel_init=init, name='conv')(x)
    return nn.relu(self.norm(name='batch_norm')(x))


class SeparableConv(nn.Module):
  """`slim.separable_conv2d` with its defaults (bias, ReLU, no normaliser):
  depthwise kxk/stride with `depth_multiplier` outputs per input channel,
  pointwise 1x1 to `features`, bias, ReLU."""
  features: int
  kernel_size: int
  depth_multiplier: int
  strides: int = 1
  stddev: float = 1.0
  dtype: Dtype = jnp.float32
  conv: ModuleDef = nn.Conv  # common.CONV_IMPLS

  @nn.compact
  def __call__(self, x):
    in_channels = x.shape[-1]
    x = self.conv(in_channels * self.depth_multiplier,
                  (self.kernel_size,) * 2, (self.strides,) * 2,
                  padding='SAME', feature_group_count=in_channels,
                  use_bias=False, dtype=self.dtype,
                  kernel_init=trunc_normal(self.stddev), name='depthwise')(x)
    # slim: pointwise_initializer=None falls back to weights_initializer.
    x = self.conv(self.features, (1, 1), padding='SAME', use_bias=True,
                  dtype=self.dtype, kernel_init=trunc_normal(self.stddev),
                  bias_init=nn.initializers.zeros, name='pointwise')(x)
    return nn.relu(x)


# One convolution of a branch: (slim scope in lower case, depth, kernel,
# stride, trunc_normal stddev or None for the arg scope's he_init).
ConvSpec = tuple[str, int, int, int, float | None]


class Branch(nn.Module):
  """A slim `Branch_i` scope: an optional 3x3/1 pool, then convolutions."""
  convs: Sequence[ConvSpec]
  norm: ModuleDef
  pool: str | None = None  # 'avg' or 'max', before the convolutions
  dtype: Dtype = jnp.float32
  conv: ModuleDef = nn.Conv  # common.CONV_IMPLS

  @nn.compact
  def __call__(self, x):
    if self.pool == 'avg':
      x = avg_pool_3x3(x)
    elif self.pool == 'max':
      x = max_pool_3x3(x)
    elif self.pool is not None:
      raise ValueError(f'unknown pool {self.pool!r}')
    for name, depth, kernel, stride, stddev in self.convs:
      x = ConvBN(depth, kernel, self.norm, strides=stride, stddev=stddev,
                 dtype=self.dtype, conv=self.conv, name=name)(x)
    return x


class InceptionModule(nn.Module):
  """Mixed_3b/3c/4b-4e/5b/5c: four stride-1 branches, concatenated.

  Branch_0: 1x1 `b0`. Branch_1: 1x1 `b1_reduce` → 3x3 `b1`.
  Branch_2: 1x1 `b2_reduce` → 3x3 `b2` → 3x3 `b2`.
  Branch_3: 3x3/1 `pool` ('avg', or 'max' in Mixed_5c) → 1x1 `pool_proj`.
  """
  b0: int
  b1_reduce: int
  b1: int
  b2_reduce: int
  b2: int
  pool_proj: int
  norm: ModuleDef
  pool: str = 'avg'
  dtype: Dtype = jnp.float32
  conv: ModuleDef = nn.Conv  # common.CONV_IMPLS

  @nn.compact
  def __call__(self, x):
    branch = lambda convs, name, pool=None: Branch(
        convs, self.norm, pool=pool, dtype=self.dtype, conv=self.conv,
        name=name)(x)
    b0 = branch((('conv2d_0a_1x1', self.b0, 1, 1, None),), 'branch_0')
    b1 = branch((('conv2d_0a_1x1', self.b1_reduce, 1, 1, 0.09),
                 ('conv2d_0b_3x3', self.b1, 3, 1, None)), 'branch_1')
    b2 = branch((('conv2d_0a_1x1', self.b2_reduce, 1, 1, 0.09),
                 ('conv2d_0b_3x3', self.b2, 3, 1, None),
                 ('conv2d_0c_3x3', self.b2, 3, 1, None)), 'branch_2')
    b3 = branch((('conv2d_0b_1x1', self.pool_proj, 1, 1, 0.1),), 'branch_3',
                pool=self.pool)
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class ReductionModule(nn.Module):
  """Mixed_4a/5a: stride-2 branches, concatenated.

  Branch_0: 1x1 `b0_reduce` → 3x3/2 `b0`.
  Branch_1: 1x1 `b1_reduce` → 3x3 `b1` → 3x3/2 `b1`.
  Branch_2: 3x3/2 max pool (MaxPool_1a_3x3), no parameters.
  """
  b0_reduce: int
  b0: int
  b1_reduce: int
  b1: int
  norm: ModuleDef
  dtype: Dtype = jnp.float32
  conv: ModuleDef = nn.Conv  # common.CONV_IMPLS

  @nn.compact
  def __call__(self, x):
    b0 = Branch((('conv2d_0a_1x1', self.b0_reduce, 1, 1, 0.09),
                 ('conv2d_1a_3x3', self.b0, 3, 2, None)),
                self.norm, dtype=self.dtype, conv=self.conv, name='branch_0')(x)
    b1 = Branch((('conv2d_0a_1x1', self.b1_reduce, 1, 1, 0.09),
                 ('conv2d_0b_3x3', self.b1, 3, 1, None),
                 ('conv2d_1a_3x3', self.b1, 3, 2, None)),
                self.norm, dtype=self.dtype, conv=self.conv, name='branch_1')(x)
    b2 = max_pool_3x3(x, stride=2)
    return jnp.concatenate([b0, b1, b2], axis=-1)


class InceptionV2(nn.Module):
  """slim's `inception_v2` (with `global_pool=True`) for classification at any
  input size of at least 32x32. Sizes in comments are for 224x224 inputs."""
  num_classes: int = 1000
  dropout_rate: float = 0.2  # slim's dropout_keep_prob 0.8
  dtype: Dtype = jnp.float32
  conv: ModuleDef = nn.Conv  # common.CONV_IMPLS
  bn_axis_name: str | None = None
  bn_epsilon: float = 1e-3  # inception_arg_scope's batch_norm_epsilon
  bn_momentum: float = 0.9997  # inception_arg_scope's batch_norm_decay

  @nn.compact
  def __call__(self, x, train: bool = True):
    norm = batch_norm(train, self.dtype, self.bn_axis_name,
                      momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                      use_scale=False)
    conv = lambda depth, kernel, name, strides=1, stddev=None: ConvBN(
        depth, kernel, norm, strides=strides, stddev=stddev,
        dtype=self.dtype, conv=self.conv, name=name)
    mixed = lambda name, *depths, pool='avg': InceptionModule(
        *depths, norm=norm, pool=pool, dtype=self.dtype, conv=self.conv,
        name=name)
    reduction = lambda name, *depths: ReductionModule(
        *depths, norm=norm, dtype=self.dtype, conv=self.conv, name=name)

    # 224 x 224 x 3. slim: depthwise_multiplier = min(int(depth(64) / 3), 8).
    x = SeparableConv(64, 7, depth_multiplier=min(64 // 3, 8), strides=2,
                      stddev=1.0, dtype=self.dtype, conv=self.conv,
                      name='conv2d_1a_7x7')(x)
    # 112 x 112 x 64
    x = max_pool_3x3(x, stride=2)  # MaxPool_2a_3x3
    # 56 x 56 x 64
    x = conv(64, 1, 'conv2d_2b_1x1', stddev=0.1)(x)
    x = conv(192, 3, 'conv2d_2c_3x3')(x)
    x = max_pool_3x3(x, stride=2)  # MaxPool_3a_3x3
    # 28 x 28 x 192. Depths: b0, b1_reduce, b1, b2_reduce, b2, pool_proj.
    x = mixed('mixed_3b', 64, 64, 64, 64, 96, 32)(x)  # → 256
    x = mixed('mixed_3c', 64, 64, 96, 64, 96, 64)(x)  # → 320
    x = reduction('mixed_4a', 128, 160, 64, 96)(x)  # → 160 + 96 + 320 = 576
    # 14 x 14 x 576
    x = mixed('mixed_4b', 224, 64, 96, 96, 128, 128)(x)  # → 576
    x = mixed('mixed_4c', 192, 96, 128, 96, 128, 128)(x)  # → 576
    x = mixed('mixed_4d', 160, 128, 160, 128, 160, 96)(x)  # → 576
    x = mixed('mixed_4e', 96, 128, 192, 160, 192, 96)(x)  # → 576
    x = reduction('mixed_5a', 128, 192, 192, 256)(x)  # → 192 + 256 + 576
    # 7 x 7 x 1024
    x = mixed('mixed_5b', 352, 192, 320, 160, 224, 128)(x)  # → 1024
    x = mixed('mixed_5c', 352, 192, 320, 192, 224, 128, pool='max')(x)
    # Logits. slim's AvgPool_1a has kernel min(7, H) x min(7, W) 'VALID', a
    # global pool at 224 (7x7 map); a global mean works at any resolution.
    x = jnp.mean(x, axis=(1, 2), keepdims=True)  # 1 x 1 x 1024
    x = nn.Dropout(self.dropout_rate, deterministic=not train,
                   name='dropout_1b')(x)
    x = self.conv(self.num_classes, (1, 1), use_bias=True, dtype=self.dtype,
                  kernel_init=he_init, bias_init=nn.initializers.zeros,
                  name='conv2d_1c_1x1')(x)  # slim's Logits/Conv2d_1c_1x1
    return x[:, 0, 0, :]  # SpatialSqueeze

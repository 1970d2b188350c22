"""Resizers: the paper's learned resizer and the baselines it is compared to.

Every resizer is a linen module called as `resizer(images, train=bool)` on
NHWC float images (values in [0, 1]) of any spatial size, returning images
of `out_size = (height, width)` in the same value range, so that any of them
can stand in front of any backbone.

Interpolation goes through `jax.image.resize`, which antialiases by default
when it downscales. The paper's implementations used TensorFlow's resize,
which does not, so every resizer here takes `antialias` explicitly and
defaults it to False.
"""

import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from resizer.errors import require
from resizer.models.common import Dtype, ModuleDef

# Names accepted for `interpolation`, mapped to `jax.image.resize` methods.
INTERPOLATIONS = {
    'nearest': 'nearest',
    'bilinear': 'linear',
    'bicubic': 'cubic',
    'lanczos3': 'lanczos3',
    'lanczos5': 'lanczos5',
}


def check_size(owner: str, field: str, size) -> None:
  """Checks that `size` is a (height, width) pair of positive ints."""
  require(isinstance(size, Sequence) and len(size) == 2
          and all(isinstance(s, int) and s > 0 for s in size),
          f'{owner}: {field}', size,
          'a (height, width) pair of positive integers')


def check_interpolation(owner: str, interpolation: str) -> None:
  require(interpolation in INTERPOLATIONS, f'{owner}: interpolation',
          interpolation, f'one of {sorted(INTERPOLATIONS)}')


def resize(x: jnp.ndarray, out_size: Sequence[int], interpolation: str,
           antialias: bool) -> jnp.ndarray:
  """Resizes the spatial axes of an NHWC batch with a fixed interpolation.

  Bilinear without antialiasing (the paper's setting) takes a two-tap path
  with the same output as `jax.image.resize`, which otherwise interpolates
  with dense (out x in) matrices: on the learned resizer's 16-channel
  features at 448→224 that is ~2 GFLOPs per image spent mostly on zeros.
  """
  if interpolation == 'bilinear' and not antialias:
    return bilinear_two_tap(x, out_size)
  return reference_resize(x, out_size, interpolation, antialias)


def reference_resize(x: jnp.ndarray, out_size: Sequence[int],
                     interpolation: str, antialias: bool) -> jnp.ndarray:
  """`jax.image.resize` on the spatial axes of an NHWC batch."""
  shape = (x.shape[0], *out_size, x.shape[-1])
  return jax.image.resize(x, shape, method=INTERPOLATIONS[interpolation],
                          antialias=antialias)


# What a resizer's `resize_fn` field may hold: (x, out_size, interpolation,
# antialias) → resized x. Both give the same output; `reference_resize` is
# there to measure what `resize`'s two-tap path buys (benchmarks/).
ResizeFn = Callable[[jnp.ndarray, Sequence[int], str, bool], jnp.ndarray]


def bilinear_two_tap(x: jnp.ndarray, out_size: Sequence[int]) -> jnp.ndarray:
  """Bilinear resize without antialiasing, as `jax.image.resize` samples it
  (output i reads input coordinate (i + 0.5) * in / out - 0.5, clamped to the
  edges), computed from the two neighbouring pixels of each output pixel."""
  for axis, n_out in ((1, out_size[0]), (2, out_size[1])):
    x = _two_tap_axis(x, axis, int(n_out))
  return x


def _two_tap_axis(x: jnp.ndarray, axis: int, n_out: int) -> jnp.ndarray:
  n_in = x.shape[axis]
  if n_in == n_out:
    return x
  if n_in % n_out == 0:
    # Integer downscale by k: the middle one or two pixels of each block of
    # k, picked through a (n_out, k) reshape. Strided slices compute the
    # same, but their gradient (an interior-padded scatter) is slow on CPU.
    k = n_in // n_out
    blocks = x.reshape(x.shape[:axis] + (n_out, k) + x.shape[axis + 1:])
    def pick(i):
      return jax.lax.index_in_dim(blocks, i, axis=axis + 1, keepdims=False)
    if k % 2:
      return pick(k // 2)
    return (pick(k // 2 - 1) + pick(k // 2)) * 0.5
  coord = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
  lo = np.floor(coord).astype(np.int32)
  hi = np.minimum(lo + 1, n_in - 1)
  shape = [1] * x.ndim
  shape[axis] = n_out
  w_hi = jnp.asarray((coord - lo).reshape(shape), x.dtype)
  return (jnp.take(x, lo, axis=axis) * (1 - w_hi)
          + jnp.take(x, hi, axis=axis) * w_hi)


class FixedResizer(nn.Module):
  """A fixed interpolation to `out_size`; no parameters."""
  out_size: Sequence[int]
  interpolation: str = 'bilinear'
  antialias: bool = False
  resize_fn: ResizeFn = resize

  def __post_init__(self):
    check_size('FixedResizer', 'out_size', self.out_size)
    check_interpolation('FixedResizer', self.interpolation)
    super().__post_init__()

  def naive(self, x):
    """The fixed resize this resizer starts from: for this one, itself."""
    return self.resize_fn(x, self.out_size, self.interpolation, self.antialias)

  def __call__(self, x, train: bool = True):
    del train  # No state.
    return self.naive(x)


class IdentityResizer(nn.Module):
  """No resizing: the input pipeline already produced `out_size` images."""
  out_size: Sequence[int]

  def __post_init__(self):
    check_size('IdentityResizer', 'out_size', self.out_size)
    super().__post_init__()

  def naive(self, x):
    """The fixed resize this resizer starts from: none."""
    return x

  def __call__(self, x, train: bool = True):
    del train
    if tuple(x.shape[1:3]) != tuple(self.out_size):
      raise ValueError(
          f"resizer kind 'none' expects images of size {tuple(self.out_size)} "
          f'from the input pipeline, got {tuple(x.shape[1:3])}; set '
          'resizer.in_size equal to resizer.out_size or choose another kind.')
    return x


class ResizedBatchNorm(nn.Module):
  """`resize(BatchNorm(x))`, normalising after the resize.

  A resize mixes pixels within a channel with weights that sum to one, so it
  commutes with BatchNorm's per-channel affine map: the statistics must come
  from `x`, but the normalisation (and its gradient) can run on the resized
  features, 4x fewer at 448→224. Semantics follow `nn.BatchNorm` (float32
  statistics, E[x²] - E[x]² variance, statistics averaged over `axis_name`,
  running averages with `momentum`), and so do the variable names
  ('scale', 'bias'; 'mean', 'var'), so checkpoints are interchangeable.
  """
  use_running_average: bool
  momentum: float
  epsilon: float
  dtype: Dtype = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, resize_fn):
    features = (x.shape[-1],)
    scale = self.param('scale', nn.initializers.ones, features, jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, features, jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, features,
                            jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, features,
                           jnp.float32)
    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
      moments = jnp.stack([x32.mean((0, 1, 2)), (x32 * x32).mean((0, 1, 2))])
      if self.axis_name is not None and not self.is_initializing():
        moments = jax.lax.pmean(moments, self.axis_name)
      mean, var = moments[0], jnp.maximum(0.0, moments[1] - moments[0] ** 2)
      if not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    mul = jax.lax.rsqrt(var + self.epsilon) * scale
    return ((resize_fn(x) - mean) * mul + bias).astype(self.dtype)


class ResBlock(nn.Module):
  """y + BN(conv3x3(LeakyReLU(BN(conv3x3(y))))), convolutions without bias."""
  conv: ModuleDef
  norm: ModuleDef
  negative_slope: float

  @nn.compact
  def __call__(self, y):
    z = self.conv(name='conv1')(y)
    z = nn.leaky_relu(self.norm(name='bn1')(z), self.negative_slope)
    z = self.conv(name='conv2')(z)
    return y + self.norm(name='bn2')(z)


class LearnedResizer(nn.Module):
  """The learned resizer of Talebi & Milanfar (ICCV 2021), Figure 2.

  The output is the naive resize of the input plus a learned, unbounded
  residual computed from features taken at the input resolution and resized
  to `out_size` (a bottleneck when downscaling, an inverse bottleneck when
  upscaling). With the defaults (16 filters, one residual block) it has
  12,035 trainable parameters and 128 BatchNorm statistics.
  """
  out_size: Sequence[int]
  num_filters: int = 16
  num_res_blocks: int = 1
  interpolation: str = 'bilinear'
  antialias: bool = False
  negative_slope: float = 0.2
  dtype: Dtype = jnp.float32
  bn_axis_name: str | None = None
  # Keras' BatchNormalization epsilon (the paper's framework); the momentum is
  # the zoo's 0.9 so that short runs get usable running statistics.
  bn_epsilon: float = 1e-3
  bn_momentum: float = 0.9
  conv: ModuleDef = nn.Conv  # common.CONV_IMPLS
  resize_fn: ResizeFn = resize

  def __post_init__(self):
    owner = 'LearnedResizer'
    check_size(owner, 'out_size', self.out_size)
    check_interpolation(owner, self.interpolation)
    require(isinstance(self.num_filters, int) and self.num_filters >= 1,
            f'{owner}: num_filters', self.num_filters, 'an integer >= 1')
    require(isinstance(self.num_res_blocks, int) and self.num_res_blocks >= 1,
            f'{owner}: num_res_blocks', self.num_res_blocks, 'an integer >= 1')
    super().__post_init__()

  def naive(self, x):
    """The fixed resize this resizer adds its learned residual to."""
    return self.resize_fn(x, self.out_size, self.interpolation, self.antialias)

  @nn.compact
  def __call__(self, x, train: bool = True):
    x = x.astype(self.dtype)
    act = functools.partial(nn.leaky_relu, negative_slope=self.negative_slope)
    norm = functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=self.bn_momentum,
        epsilon=self.bn_epsilon, dtype=self.dtype, axis_name=self.bn_axis_name)
    conv = functools.partial(self.conv, dtype=self.dtype)
    conv3x3 = functools.partial(conv, self.num_filters, (3, 3), padding='SAME',
                                use_bias=False)
    resize_to_target = functools.partial(
        self.resize_fn, out_size=self.out_size, interpolation=self.interpolation,
        antialias=self.antialias)

    naive = self.naive(x)
    f = act(conv(self.num_filters, (7, 7), padding='SAME', name='conv_in')(x))
    f = act(conv(self.num_filters, (1, 1), name='conv_1x1')(f))
    bottleneck = ResizedBatchNorm(
        not train, self.bn_momentum, self.bn_epsilon, self.dtype,
        self.bn_axis_name, name='bn_in')(f, resize_to_target)

    y = bottleneck
    for i in range(self.num_res_blocks):
      # Chained: block i refines block i-1's output, not the bottleneck.
      y = ResBlock(conv3x3, norm, self.negative_slope, name=f'res_block{i + 1}')(y)
    y = norm(name='bn_out')(conv3x3(name='conv_out')(y))
    y = y + bottleneck
    y = conv(x.shape[-1], (7, 7), padding='SAME', name='conv_to_image')(y)
    return y + naive


def gaussian_kernel(kernel_size: int, stddev: float) -> np.ndarray:
  """The normalised 1-D Gaussian taps of MULLER's blur."""
  radius = kernel_size // 2
  t = np.arange(-radius, radius + 1, dtype=np.float64)
  k = np.exp(-t**2 / (2.0 * stddev**2))
  return k / k.sum()


def gaussian_blur(x: jnp.ndarray, kernel_size: int, stddev: float
                  ) -> jnp.ndarray:
  """Separable Gaussian blur of an NHWC batch with zero ('SAME') padding, as
  shifted multiply-adds: a grouped convolution computes the same but runs
  several times slower on XLA's CPU backend (see benchmarks/README.md)."""
  taps = gaussian_kernel(kernel_size, stddev)
  r = kernel_size // 2
  for axis in (1, 2):
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    padded = jnp.pad(x, pad)
    x = sum(float(w) * jax.lax.slice_in_dim(padded, i, i + n, axis=axis)
            for i, w in enumerate(taps))
  return x


class MullerResizer(nn.Module):
  """MULLER (Tu, Milanfar & Talebi, ICCV 2023): a multilayer Laplacian resizer.

  `out = resize(x) + sum_l tanh(w_l * resize(blur_l(x) - blur_{l-1}(x)) + b_l)`
  with one scalar weight and bias per layer, zero-initialised, so at
  initialisation it equals its base resize (the tanh terms are tanh(0) = 0).
  The blur is a separable Gaussian with zero ('SAME') padding, as in the
  reference implementation.
  """
  out_size: Sequence[int]
  num_layers: int = 2
  interpolation: str = 'bilinear'
  antialias: bool = False
  kernel_size: int = 5
  stddev: float = 1.0
  avg_pool: bool = False
  dtype: Dtype = jnp.float32
  resize_fn: ResizeFn = resize

  def __post_init__(self):
    owner = 'MullerResizer'
    check_size(owner, 'out_size', self.out_size)
    check_interpolation(owner, self.interpolation)
    require(isinstance(self.num_layers, int) and self.num_layers >= 1,
            f'{owner}: num_layers', self.num_layers, 'an integer >= 1')
    require(isinstance(self.kernel_size, int) and self.kernel_size % 2 == 1,
            f'{owner}: kernel_size', self.kernel_size,
            'an odd positive integer')
    super().__post_init__()

  def naive(self, x):
    """The base resize: MULLER's output at initialisation, to which its
    layers add their detail terms."""
    strides = (x.shape[1] // self.out_size[0], x.shape[2] // self.out_size[1])
    if self.avg_pool and min(strides) > 1:
      x = nn.avg_pool(x, strides, strides=strides, padding='SAME',
                      count_include_pad=False)
    return self.resize_fn(x, self.out_size, self.interpolation, self.antialias)

  def _blur(self, x):
    return gaussian_blur(x, self.kernel_size, self.stddev)

  @nn.compact
  def __call__(self, x, train: bool = True):
    del train
    x = x.astype(self.dtype)
    net = self.naive(x)
    for layer in range(1, self.num_layers + 1):
      w = self.param(f'weight_{layer}', nn.initializers.zeros, ())
      b = self.param(f'bias_{layer}', nn.initializers.zeros, ())
      blurred = self._blur(x)
      detail = self.naive(blurred - x)
      net = net + jnp.tanh(w.astype(self.dtype) * detail + b.astype(self.dtype))
      x = blurred
    return net

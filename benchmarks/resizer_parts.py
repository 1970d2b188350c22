r"""Where the learned resizer's training time goes: forward + backward of the
whole resizer and of its stages, timed in turns after compilation.

  python benchmarks/resizer_parts.py --in_size=448 --out_size=224 --batch_size=8

Stages (as in resizers.LearnedResizer, n filters, with the model's own
convolutions as the CPU benchmarks build them, `conv_impl='cpu_forms'`):
  conv_in      7x7 convolution 3→n at the input size (forward + weight
               gradient: the images need no gradient)
  input_size   LeakyReLU, 1x1 convolution n→n, LeakyReLU, BatchNorm
               statistics, resize to the output size, normalisation
  res_blocks   the residual block, conv_out + BatchNorm and the skip, at the
               output size
  conv_to_image  7x7 convolution n→3 at the output size
  resizer      the whole LearnedResizer (its sum, plus the naive resize)
One JSON line per stage, then a table with each stage's share of the whole.
"""

import argparse
import functools
import json
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from resizer.models import resizers
from resizer.models.common import CONV_IMPLS

Conv = CONV_IMPLS['cpu_forms']


class InputSizeStage(nn.Module):
  out_size: tuple

  @nn.compact
  def __call__(self, f):
    act = functools.partial(nn.leaky_relu, negative_slope=0.2)
    f = act(Conv(f.shape[-1], (1, 1))(act(f)))
    return resizers.ResizedBatchNorm(False, 0.9, 1e-3)(
        f, functools.partial(resizers.resize, out_size=self.out_size,
                             interpolation='bilinear', antialias=False))


class OutputSizeStage(nn.Module):

  @nn.compact
  def __call__(self, y):
    norm = functools.partial(nn.BatchNorm, use_running_average=False,
                             momentum=0.9, epsilon=1e-3)
    conv3 = functools.partial(Conv, y.shape[-1], (3, 3), padding='SAME',
                              use_bias=False)
    z = resizers.ResBlock(conv3, norm, 0.2)(y)
    return norm()(conv3()(z)) + y


def grad_fn(module, x, **kwargs):
  """A jitted (params → parameter gradient) of sum(module(x)²), training."""
  variables = dict(module.init(jax.random.key(0), x[:1], **kwargs))
  params = variables.pop('params')

  def loss(p):
    y, _ = module.apply({'params': p, **variables}, x,
                        mutable=['batch_stats'], **kwargs)
    return jnp.sum(jnp.square(y))

  return jax.jit(jax.grad(loss)), params


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--in_size', type=int, default=448)
  parser.add_argument('--out_size', type=int, default=224)
  parser.add_argument('--batch_size', type=int, default=8)
  parser.add_argument('--num_filters', type=int, default=16)
  parser.add_argument('--repeats', type=int, default=7)
  args = parser.parse_args(argv)
  n, b = args.num_filters, args.batch_size
  out = (args.out_size, args.out_size)
  rng = np.random.default_rng(0)
  def data(size, c):
    return jnp.asarray(rng.normal(size=(b, size, size, c)), jnp.float32)
  images = jnp.asarray(rng.uniform(size=(b, args.in_size, args.in_size, 3)),
                       jnp.float32)

  stages = {
      'conv_in': (Conv(n, (7, 7), padding='SAME'), images, {}),
      'input_size': (InputSizeStage(out), data(args.in_size, n), {}),
      'res_blocks': (OutputSizeStage(), data(args.out_size, n), {}),
      'conv_to_image': (Conv(3, (7, 7), padding='SAME'),
                        data(args.out_size, n), {}),
      'resizer': (resizers.LearnedResizer(out_size=out, num_filters=n),
                  images, {'train': True}),
  }
  compiled = {name: grad_fn(m, x, **kw) for name, (m, x, kw) in stages.items()}
  times = {name: [] for name in stages}
  for name, (fn, p) in compiled.items():  # Warm-up.
    jax.block_until_ready(fn(p))
  for _ in range(args.repeats):
    for name, (fn, p) in compiled.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(p))
      times[name].append(time.perf_counter() - t0)
  whole = np.median(times['resizer'])
  rows = []
  for name, ts in times.items():
    row = dict(stage=name, in_size=args.in_size, out_size=args.out_size,
               batch_size=b, num_filters=n,
               device_kind=jax.devices()[0].device_kind,
               ms_median=round(1e3 * float(np.median(ts)), 2),
               ms_min=round(1e3 * min(ts), 2),
               share_of_resizer=round(float(np.median(ts)) / whole, 3))
    rows.append(row)
    print(json.dumps(row), flush=True)
  print('| stage | ms (min) | share of resizer |\n|---|---|---|')
  for r in rows:
    print(f"| {r['stage']} | {r['ms_median']} ({r['ms_min']}) | "
          f"{r['share_of_resizer']:.2f} |")
  return rows


if __name__ == '__main__':
  main()

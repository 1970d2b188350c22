r"""Times the jitted train step, the very one resizer.train runs.

  python benchmarks/train_step.py --config=configs/imagenet_resnet50.py \
      --resizers=learned:448,none:224 --batch_size=256 --dtype=bfloat16

For each `kind:resolution` setting it reports, after compilation: images/s,
median step time and its spread over `--repeats` timed runs of `--steps`
steps each, compile time, peak device memory where the backend reports it,
XLA's FLOPs per image for the whole step (forward + backward + update),
the achieved FLOP/s, and MFU when the device's peak is known. One JSON line
per setting, then a table with the step-time ratio of each setting to the
first. Synthetic uint8 batches: this measures the step, not the input.

All settings are compiled first and then timed in turns (one run of each
per round), so that a shared machine's slow spells fall on all of them; the
ratio to the first setting is the median of the per-round ratios.
"""

import argparse
import importlib.util
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import common
from resizer import optim, tasks, train
from resizer.models import composite, conv_forms, resizers

# Dense bf16 peak FLOP/s per device (vendor figures, no sparsity).
PEAK_FLOPS = {'H100': 989e12, 'H200': 989e12, 'A100': 312e12,
              'TPU v4': 275e12, 'TPU v5 lite': 197e12, 'TPU v5e': 197e12}


def peak_flops(device) -> float | None:
  kind = device.device_kind
  return next((v for k, v in PEAK_FLOPS.items() if k in kind), None)


def load_config(path: str):
  """A config file[:arg], as resizer.main reads it."""
  file, _, arg = path.partition(':')
  spec = importlib.util.spec_from_file_location('bench_config', file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None)


class Setting:
  """One config's compiled train step, with its state and a synthetic batch."""

  def __init__(self, config, batch_size: int):
    mesh = jax.sharding.Mesh(np.array(jax.devices()), (train.AXIS,))
    self.config, self.batch_size = config, batch_size
    self.in_size = composite.as_size(config.resizer.in_size, 'in_size')
    task = tasks.get_task(config)
    model = composite.build_model(config, bn_axis_name=train.AXIS)
    tx, schedule = optim.make_optimizer(config.optim, 1000, 100_000)
    self.state = train.make_init(composite.build_model(config), tx,
                                 self.in_size, mesh)(jax.random.key(0))
    step = train.make_train_step(model, tx, task, schedule, mesh)
    rng = np.random.default_rng(0)
    batch = {'image': rng.integers(0, 256, (batch_size, *self.in_size, 3),
                                   np.uint8),
             'label': rng.integers(0, config.model.num_classes, batch_size)}
    if config.task == 'iqa':
      batch['label'] = np.full((batch_size, 10), 0.1, np.float32)
    self.batch = jax.device_put(batch, NamedSharding(mesh, P(train.AXIS)))
    self.key = jax.random.key(1)

    t0 = time.perf_counter()
    self.compiled = step.lower(self.state, self.batch, self.key).compile()
    self.compile_sec = time.perf_counter() - t0
    cost = self.compiled.cost_analysis() or {}
    self.flops = float(cost.get('flops', 0.0))  # Per device program.
    self.run(1)  # Warm-up.
    self.times = []

  def run(self, steps: int) -> float:
    """Seconds per step over `steps` steps."""
    t0 = time.perf_counter()
    for _ in range(steps):
      self.state, metrics = self.compiled(self.state, self.batch, self.key)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - t0) / steps

  def row(self) -> dict:
    config, times = self.config, self.times
    step_sec = float(np.median(times))
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    peak = peak_flops(device)
    # XLA's count is per device program; every device runs one shard.
    flops_per_image = self.flops * jax.device_count() / self.batch_size
    achieved = flops_per_image * self.batch_size / step_sec
    return dict(
        model=config.model.name, resizer=config.resizer.kind,
        in_size=list(self.in_size), out_size=list(composite.as_size(
            config.resizer.out_size, 'out_size')),
        dtype=config.model.dtype, batch_size=self.batch_size,
        devices=jax.device_count(), device_kind=device.device_kind,
        compile_sec=round(self.compile_sec, 2),
        step_ms_median=round(1e3 * step_sec, 3),
        step_ms_min=round(1e3 * min(times), 3),
        step_ms_max=round(1e3 * max(times), 3),
        images_per_sec=round(self.batch_size / step_sec, 2),
        images_per_sec_per_device=round(self.batch_size / step_sec
                                        / jax.device_count(), 2),
        peak_memory_gib=(round(stats['peak_bytes_in_use'] / 2**30, 3)
                         if 'peak_bytes_in_use' in stats else None),
        train_gflops_per_image=float(f'{flops_per_image / 1e9:.4g}'),
        achieved_tflops=float(f'{achieved / 1e12:.4g}'),
        mfu=(round(achieved / (peak * jax.device_count()), 4) if peak
             else None),
    )


def make_setting(args: argparse.Namespace, spec: str) -> Setting:
  """The `kind:resolution` setting `spec` of `args.config`, with the
  command line's --out_size, --model, --dtype and --batch_size applied."""
  kind, _, res = spec.partition(':')
  config = load_config(args.config)
  config.resizer = common.resizer_config(kind, int(res or args.out_size),
                                         args.out_size)
  if args.model:
    config.model.name = args.model
  if args.dtype:
    config.model.dtype = args.dtype
  batch = args.batch_size or config.input.batch_size
  if batch % jax.device_count():
    sys.exit(f'--batch_size={batch} is not a multiple of the '
             f'{jax.device_count()} devices')
  return Setting(config, batch)


def time_in_turns(settings: list[Setting], steps: int, repeats: int
                  ) -> list[dict]:
  """Times every setting once per round for `repeats` rounds; rows with
  `ratio`, the median over rounds of each setting's time / the first's."""
  for _ in range(repeats):
    for setting in settings:
      setting.times.append(setting.run(steps))
  base = np.asarray(settings[0].times)
  rows = []
  for setting in settings:
    row = setting.row()
    row['ratio'] = round(float(np.median(np.asarray(setting.times) / base)), 3)
    rows.append(row)
  return rows


def table(rows: list[dict]) -> str:
  head = ['model', 'resizer', 'in→out', 'dtype', 'batch', 'step ms (min-max)',
          'ratio', 'img/s', 'GFLOPs/img', 'TFLOP/s', 'MFU', 'compile s',
          'peak GiB']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in rows:
    lines.append('| ' + ' | '.join(str(v) for v in [
        r['model'], r['resizer'], f"{r['in_size'][0]}→{r['out_size'][0]}",
        r['dtype'], r['batch_size'],
        f"{r['step_ms_median']} ({r['step_ms_min']}-{r['step_ms_max']})",
        f"{r['ratio']:.3f}", r['images_per_sec'],
        r['train_gflops_per_image'], r['achieved_tflops'],
        r['mfu'] if r['mfu'] is not None else '-', r['compile_sec'],
        r['peak_memory_gib'] if r['peak_memory_gib'] is not None else '-']) + ' |')
  return '\n'.join(lines)


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', required=True)
  parser.add_argument('--resizers', default='learned:448,none:224',
                      help='comma-separated kind:resolution settings; the '
                           'first is the base of the ratio column')
  parser.add_argument('--out_size', type=int, default=224)
  parser.add_argument('--model', default=None, help='override config.model.name')
  parser.add_argument('--batch_size', type=int, default=None)
  parser.add_argument('--dtype', default=None, choices=composite.DTYPES)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--resize_impl', default='two_tap',
                      choices=['two_tap', 'jax_image'],
                      help='jax_image: every resize through jax.image.resize '
                           '(dense matrices), to measure what two_tap buys')
  parser.add_argument('--conv_impl', default='forms', choices=['forms', 'lax'],
                      help='lax: every convolution as lax emits it, to '
                           'measure what resizer.models.conv_forms buys')
  args = parser.parse_args(argv)
  if args.resize_impl == 'jax_image':
    resizers.resize = resizers.reference_resize
  conv_forms.ENABLED = args.conv_impl == 'forms'
  settings = [make_setting(args, spec) for spec in args.resizers.split(',')]
  rows = time_in_turns(settings, args.steps, args.repeats)
  for row in rows:
    row['resize_impl'] = args.resize_impl
    row['conv_impl'] = args.conv_impl
    print(json.dumps(row), flush=True)
  print(table(rows))
  return rows


if __name__ == '__main__':
  main()

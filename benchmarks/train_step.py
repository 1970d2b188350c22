r"""Times the jitted train step, the very one resizer.train runs.

  python benchmarks/train_step.py --config=configs/imagenet_resnet50.py \
      --resizers=learned:448,none:224 --batch_size=256 --dtype=bfloat16

  python benchmarks/train_step.py --config=configs/imagenet_resnet50.py \
      --resizers=none:224,learned:448 --batch_size=8 --dtype=float32 \
      --memory_only --fit_hbm_gib=16,32,80

With --memory_only nothing runs: each setting's step is compiled and XLA's
memory analysis of it reported (argument, output, aliased and temporary
bytes, and temporary bytes per image), and with --fit_hbm_gib the largest
global batch whose step fits each HBM size, by bisection over compiled
programs. The figures are the compiling platform's: XLA's buffer
assignment on CPU is not TPU's, which pads the minor dimension of a tensor
to 128 lanes. `--topology=v5e:2x2` compiles for one chip of a Cloud TPU
topology without TPU hardware (it needs the libtpu package):

  pip install -c launch/constraints.txt libtpu
  python benchmarks/train_step.py --config=configs/imagenet_resnet50.py \
      --resizers=none:224,learned:448 --batch_size=8 --memory_only \
      --topology=v5e:2x2

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
import functools
import json
import math
import sys
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import common
from resizer import preflight, slices, tasks, train
from resizer.compare import load_config
from resizer.models import common as model_common
from resizer.models import composite, resizers

# Dense bf16 peak FLOP/s per device (vendor figures, no sparsity).
PEAK_FLOPS = {'H100': 989e12, 'H200': 989e12, 'A100': 312e12,
              'TPU v4': 275e12, 'TPU v5 lite': 197e12, 'TPU v5e': 197e12}


def peak_flops(device) -> float | None:
  kind = device.device_kind
  return next((v for k, v in PEAK_FLOPS.items() if k in kind), None)


# --resize_impl: what does every fixed resize in the model (see
# resizers.ResizeFn). Both compute the same output.
RESIZE_IMPLS = {'two_tap': resizers.resize,
                'jax_image': resizers.reference_resize}


def compile_step(config, batch_size: int, devices, execute: bool = True,
                 resize_fn: resizers.ResizeFn = resizers.resize):
  """(compiled train step, state, batch, compile seconds) for `config` at
  `batch_size` on `devices`: the trainer's own program (train.make_program)
  on a synthetic batch of the pipeline's shapes. Without `execute`, state
  and batch are shape structs and nothing runs (so `devices` may be a
  topology's, with no hardware here)."""
  mesh = train.make_mesh(devices)
  bn_axis = train.AXIS if config.bn_cross_device else None
  parts = train.Parts(
      tasks.get_task(config),
      composite.build_model(config, bn_axis_name=bn_axis, resize_fn=resize_fn),
      composite.build_model(config, resize_fn=resize_fn))
  program = train.make_program(config, parts, mesh, 1000, 100_000)
  key = jax.random.key(0)
  state = program.init(key) if execute else jax.eval_shape(program.init, key)
  batch = train.abstract_batch(config, batch_size, mesh,
                               tasks.label_spec(config))
  if execute:
    batch = jax.device_put(synthetic_batch(batch, config.model.num_classes),
                           batch['image'].sharding)
  key = jax.random.key(1)
  if not execute:
    key = jax.ShapeDtypeStruct(key.shape, key.dtype,
                               sharding=NamedSharding(mesh, P()))
  t0 = time.perf_counter()
  compiled = program.train_step.lower(state, batch, key).compile()
  return compiled, state, batch, time.perf_counter() - t0


def synthetic_batch(spec: dict, num_classes: int) -> dict[str, np.ndarray]:
  """Arrays of `spec`'s shapes: random uint8 images, random class labels or
  uniform rating distributions."""
  rng = np.random.default_rng(0)
  batch = {}
  for k, s in spec.items():
    if k == 'image':
      batch[k] = rng.integers(0, 256, s.shape, np.uint8)
    elif np.issubdtype(s.dtype, np.integer):
      batch[k] = rng.integers(0, num_classes, s.shape).astype(s.dtype)
    else:
      batch[k] = np.full(s.shape, 1 / s.shape[-1], s.dtype)
  return batch


def memory(compiled, batch_size: int, num_devices: int) -> dict:
  """XLA's memory analysis of a compiled step, per device program (the
  pre-flight's `preflight.Memory`), in MiB."""
  m = preflight.Memory.of(compiled)
  mib = lambda size: size / 2**20
  return dict(
      argument_mib=round(mib(m.argument), 1),
      output_mib=round(mib(m.output), 1),
      alias_mib=round(mib(m.alias), 1),
      temp_mib=round(mib(m.temp), 1),
      temp_mib_per_image=round(mib(m.temp) / (batch_size // num_devices), 2),
      total_mib=round(mib(m.total), 1))


def largest_batch(needs_mib: Callable[[int], float], hbm_gib: float,
                  multiple: int, start: int) -> int:
  """The largest batch, a multiple of `multiple`, with `needs_mib(batch)`
  at most `hbm_gib` GiB (0 if none fits); the need must grow with the
  batch. The pre-flight's search (preflight.largest_batch), from `start`."""
  return preflight.largest_batch(lambda b: needs_mib(b) <= hbm_gib * 1024,
                                 multiple, start)


class Setting:
  """One config's compiled train step, with its state and a synthetic batch."""

  def __init__(self, config, batch_size: int, devices,
               execute: bool = True,
               resize_fn: resizers.ResizeFn = resizers.resize):
    self.config, self.batch_size = config, batch_size
    self.devices, self.resize_fn = devices, resize_fn
    self.in_size = composite.sizes(config.resizer).input
    self.compiled, self.state, self.batch, self.compile_sec = compile_step(
        config, batch_size, devices, execute, resize_fn)
    self.key = jax.random.key(1)
    cost = self.compiled.cost_analysis() or {}
    self.flops = float(cost.get('flops', 0.0))  # Per device program.
    self.memory = memory(self.compiled, batch_size, len(devices))
    if execute:
      self.run(1)  # Warm-up.
    self.times = []

  def run(self, steps: int) -> float:
    """Seconds per step over `steps` steps."""
    t0 = time.perf_counter()
    for _ in range(steps):
      self.state, metrics = self.compiled(self.state, self.batch, self.key)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - t0) / steps

  @property
  def flops_per_image(self) -> float:
    # XLA's count is per device program; every device runs one shard.
    return self.flops * len(self.devices) / self.batch_size

  def describe(self) -> dict:
    """The fields that say which setting a row is."""
    config = self.config
    return dict(
        model=config.model.name, resizer=config.resizer.kind,
        in_size=list(self.in_size),
        out_size=list(composite.sizes(config.resizer).output),
        dtype=config.model.dtype, remat=config.model.remat,
        batch_size=self.batch_size, devices=len(self.devices),
        device_kind=self.devices[0].device_kind,
        compile_sec=round(self.compile_sec, 2),
        train_gflops_per_image=float(f'{self.flops_per_image / 1e9:.4g}'))

  def memory_row(self) -> dict:
    return dict(self.describe(), platform=self.devices[0].platform,
                **self.memory)

  def row(self) -> dict:
    times = self.times
    step_sec = float(np.median(times))
    device = self.devices[0]
    stats = device.memory_stats() or {}
    peak = peak_flops(device)
    achieved = self.flops_per_image * self.batch_size / step_sec
    return dict(
        self.describe(),
        step_ms_median=round(1e3 * step_sec, 3),
        step_ms_min=round(1e3 * min(times), 3),
        step_ms_max=round(1e3 * max(times), 3),
        images_per_sec=round(self.batch_size / step_sec, 2),
        images_per_sec_per_device=round(self.batch_size / step_sec
                                        / len(self.devices), 2),
        peak_memory_gib=(round(stats['peak_bytes_in_use'] / 2**30, 3)
                         if 'peak_bytes_in_use' in stats else None),
        # XLA's memory analysis of the step, beside what the device saw.
        compiled_memory_gib=round(self.memory['total_mib'] / 1024, 4),
        achieved_tflops=float(f'{achieved / 1e12:.4g}'),
        mfu=(round(achieved / (peak * len(self.devices)), 4) if peak
             else None),
    )


def step_needs_mib(setting: Setting) -> Callable[[int], float]:
  """batch → MiB per device of `setting`'s step compiled at that global
  batch (XLA's memory analysis), each batch compiled once."""

  @functools.cache
  def needs(batch: int) -> float:
    if batch == setting.batch_size:
      return setting.memory['total_mib']
    compiled = compile_step(setting.config, batch, setting.devices,
                            execute=False, resize_fn=setting.resize_fn)[0]
    return memory(compiled, batch, len(setting.devices))['total_mib']
  return needs


def make_config(args: argparse.Namespace, spec: str):
  """The `kind:resolution[:remat]` setting `spec` of `args.config`, with
  the command line's --out_size, --model, --dtype and --remat applied."""
  kind, _, rest = spec.partition(':')
  res, _, remat = rest.partition(':')
  config = load_config(args.config)
  config.resizer = common.resizer_config(kind, int(res or args.out_size),
                                         args.out_size)
  if args.model:
    config.model.name = args.model
  if args.dtype:
    config.model.dtype = args.dtype
  if remat or args.remat:
    config.model.remat = remat or args.remat
  config.model.conv_impl = args.conv_impl
  return config


def make_setting(args: argparse.Namespace, spec: str, devices) -> Setting:
  """The setting `spec` (see make_config) at --batch_size on `devices`."""
  config = make_config(args, spec)
  batch = args.batch_size or config.input.batch_size
  if batch % len(devices):
    sys.exit(f'--batch_size={batch} is not a multiple of the '
             f'{len(devices)} devices')
  return Setting(config, batch, devices,
                 execute=not getattr(args, 'memory_only', False),
                 resize_fn=RESIZE_IMPLS[getattr(args, 'resize_impl',
                                                'two_tap')])


def topology_devices(name: str) -> list:
  """One chip of the Cloud TPU topology or slice `name` (e.g. 'v5e:2x2',
  'v4-8'), for compiling without TPU hardware; needs the libtpu package."""
  try:
    return preflight.slice_devices(slices.parse(name))[:1]
  except (preflight.PreflightError, slices.UnknownSlice) as e:
    sys.exit(f'--topology={name}: {e}')


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
  head = ['model', 'resizer', 'in→out', 'dtype', 'remat', 'batch',
          'step ms (min-max)',
          'ratio', 'img/s', 'GFLOPs/img', 'TFLOP/s', 'MFU', 'compile s',
          'peak GiB', 'compiled GiB']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in rows:
    lines.append('| ' + ' | '.join(str(v) for v in [
        r['model'], r['resizer'], f"{r['in_size'][0]}→{r['out_size'][0]}",
        r['dtype'], r['remat'], r['batch_size'],
        f"{r['step_ms_median']} ({r['step_ms_min']}-{r['step_ms_max']})",
        f"{r['ratio']:.3f}", r['images_per_sec'],
        r['train_gflops_per_image'], r['achieved_tflops'],
        r['mfu'] if r['mfu'] is not None else '-', r['compile_sec'],
        r['peak_memory_gib'] if r['peak_memory_gib'] is not None else '-',
        r['compiled_memory_gib']]) + ' |')
  return '\n'.join(lines)


def memory_table(rows: list[dict], hbm: list[float]) -> str:
  head = ['model', 'resizer', 'in→out', 'dtype', 'remat', 'batch',
          'temp MiB/img', 'ratio', 'temp MiB', 'args MiB', 'total MiB',
          *[f'max batch @{g:g} GiB' for g in hbm]]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  base = rows[0]['temp_mib_per_image']
  for r in rows:
    lines.append('| ' + ' | '.join(str(v) for v in [
        r['model'], r['resizer'], f"{r['in_size'][0]}→{r['out_size'][0]}",
        r['dtype'], r['remat'], r['batch_size'], r['temp_mib_per_image'],
        f"{r['temp_mib_per_image'] / base:.3f}", r['temp_mib'],
        r['argument_mib'], r['total_mib'],
        *[r['max_batch'][f'{g:g}'] for g in hbm]]) + ' |')
  return '\n'.join(lines)


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', required=True)
  parser.add_argument('--resizers', default='learned:448,none:224',
                      help='comma-separated kind:resolution[:remat] '
                           'settings; the first is the base of the ratio '
                           'column')
  parser.add_argument('--out_size', type=int, default=224)
  parser.add_argument('--model', default=None, help='override config.model.name')
  parser.add_argument('--batch_size', type=int, default=None)
  parser.add_argument('--dtype', default=None, choices=composite.DTYPES)
  parser.add_argument('--remat', default=None, choices=composite.REMAT,
                      help='override config.model.remat')
  parser.add_argument('--memory_only', action='store_true',
                      help="compile only; report XLA's memory analysis")
  parser.add_argument('--fit_hbm_gib', default='',
                      help='with --memory_only: comma-separated HBM sizes '
                           '(GiB per device) to find the largest batch for')
  parser.add_argument('--fit_multiple', type=int, default=8,
                      help='the bisection finds the largest batch to within '
                           'this many images')
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--resize_impl', default='two_tap',
                      choices=list(RESIZE_IMPLS),
                      help='jax_image: every resize through jax.image.resize '
                           '(dense matrices), to measure what two_tap buys')
  parser.add_argument('--conv_impl', default='cpu_forms',
                      choices=list(model_common.CONV_IMPLS),
                      help='config.model.conv_impl of every setting (the '
                           'CPU forms are lax itself on GPU/TPU); lax: every '
                           'convolution as lax emits it, to measure what '
                           'resizer.models.conv_forms buys on CPU')
  parser.add_argument('--topology', default=None,
                      help='with --memory_only: compile for one chip of this '
                           'Cloud TPU topology (e.g. v5e:2x2) instead of the '
                           'devices here; needs the libtpu package')
  args = parser.parse_args(argv)
  if args.topology and not args.memory_only:
    sys.exit('--topology needs --memory_only: there is no TPU here to run on')
  devices = topology_devices(args.topology) if args.topology else jax.devices()
  settings = [make_setting(args, spec, devices)
              for spec in args.resizers.split(',')]
  if args.memory_only:
    hbm = [float(g) for g in filter(None, args.fit_hbm_gib.split(','))]
    # Every batch tried must shard over the devices and split into the
    # micro-batches of gradient accumulation.
    accumulate = settings[0].config.optim.accumulate_steps
    multiple = math.lcm(args.fit_multiple, len(devices) * accumulate)
    rows = []
    for setting in settings:
      row = setting.memory_row()
      needs = step_needs_mib(setting)
      row['max_batch'] = {
          f'{g:g}': largest_batch(needs, g, multiple, setting.batch_size)
          for g in hbm}
      print(json.dumps(row), flush=True)
      rows.append(row)
    print(memory_table(rows, hbm))
    return rows
  rows = time_in_turns(settings, args.steps, args.repeats)
  for row in rows:
    row['resize_impl'] = args.resize_impl
    row['conv_impl'] = args.conv_impl
    print(json.dumps(row), flush=True)
  print(table(rows))
  return rows


if __name__ == '__main__':
  main()

r"""Compiles a run's train and eval steps for a Cloud TPU slice, here, before
the slice is paid for: does the config fit, and by how much?

  pip install -c launch/constraints.txt -e '.[tpu-compile]'   # libtpu
  python -m resizer.preflight --topology=v4-32 \
      --config=configs/imagenet_densenet.py:resizer=learned,res=448 \
      --config.input.batch_size=1024

`--config` and its overrides are resizer.main's. The steps are the
trainer's own (`train.build`, `train.make_program`): the same mesh over
every chip of the slice, shardings, global batch, dtype, remat and gradient
accumulation. They are compiled by the TPU compiler for the named slice
(an accelerator type as `gcloud` and launch/tpu_vm.sh take it, e.g. v4-32,
v5litepod-16, v5p-8, v6e-8, or an XLA topology such as v5e:2x2); nothing
runs and no data is read. Without --topology it compiles for the devices
here (what a test can compare with the trainer's own program).

It prints, per chip: XLA's memory analysis of each step (arguments,
outputs, temporaries) against the chip's HBM, whether the run fits and
with what headroom, the largest global batch that fits (by compiling),
forward and train GFLOPs per image, and the compile times; the last line
is JSON. It exits 1 with one `error:` line when the run does not fit or
does not compile.
"""

import dataclasses
import functools
import importlib.util
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from resizer import cli, slices

INSTALL_LIBTPU = ("pip install -c launch/constraints.txt -e '.[tpu-compile]'")
# The schedule's step counts change constants in the program, not its
# buffers: a nominal length stands in for the data set's (not read here).
NOMINAL_STEPS_PER_EPOCH = 1000
# The largest-batch search looks no further than this many times the
# configured batch.
SEARCH_CAP = 8


class PreflightError(Exception):
  """What the user must change (one line)."""


def prepare_tpu_compiler() -> None:
  """Lets libtpu start on a machine without TPUs, beside other processes
  that use it (its lock file would refuse them), and without asking the
  Cloud TPU metadata server, which is not there. Only sets what is unset."""
  for key, value in (('ALLOW_MULTIPLE_LIBTPU_LOAD', '1'),
                     ('TPU_SKIP_MDS_QUERY', '1'),
                     ('TPU_ACCELERATOR_TYPE', 'v5litepod-4'),
                     ('TPU_WORKER_HOSTNAMES', 'localhost')):
    os.environ.setdefault(key, value)


def slice_devices(tpu_slice: slices.Slice) -> list:
  """Every chip of `tpu_slice`, as devices XLA can compile for."""
  if importlib.util.find_spec('libtpu') is None:
    raise PreflightError(
        f'--topology={tpu_slice.name} needs the TPU compiler (the libtpu '
        f'package): {INSTALL_LIBTPU}')
  prepare_tpu_compiler()
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  try:
    return list(topologies.get_topology_desc(
        tpu_slice.topology, platform='tpu',
        **tpu_slice.topology_kwargs()).devices)
  except jax.errors.JaxRuntimeError as e:  # The layout does not exist.
    raise PreflightError(
        f'--topology={tpu_slice.name}: the TPU compiler has no such slice: '
        f'{str(e).removeprefix("INVALID_ARGUMENT: ")} (a gcloud accelerator '
        "type such as v5litepod-16 names one that exists)") from None


@dataclasses.dataclass(frozen=True)
class Memory:
  """XLA's memory analysis of one compiled step, bytes per device."""
  argument: int
  output: int
  alias: int
  temp: int

  @classmethod
  def of(cls, compiled) -> 'Memory':
    m = compiled.memory_analysis()
    return cls(m.argument_size_in_bytes, m.output_size_in_bytes,
               m.alias_size_in_bytes, m.temp_size_in_bytes)

  @property
  def total(self) -> int:
    """What the step holds at its peak: donated (aliased) outputs reuse
    their arguments' buffers."""
    return self.argument + self.output - self.alias + self.temp


class OutOfMemory(Exception):
  """The TPU compiler refused the program: it needs more than HBM."""

  def __init__(self, needed_gib: float | None, available_gib: float | None,
               message: str):
    super().__init__(message)
    self.needed_gib, self.available_gib = needed_gib, available_gib


_NEEDED = re.compile(r'\(([\d.]+)G\) exceeds available HBM \(([\d.]+)G\)'
                     r'|Used ([\d.]+)G of ([\d.]+)G hbm')


def out_of_memory(error: Exception) -> OutOfMemory | None:
  """The compiler's out-of-memory error as figures, or None if `error` is
  another one."""
  text = str(error)
  if 'RESOURCE_EXHAUSTED' not in text and 'Ran out of memory' not in text:
    return None
  first = text.strip().splitlines()[0]
  match = _NEEDED.search(text)
  if not match:
    return OutOfMemory(None, None, first)
  needed, available = [float(g) for g in match.groups() if g is not None]
  return OutOfMemory(needed, available, first)


@dataclasses.dataclass
class Compiled:
  """One step compiled at one global batch."""
  batch_size: int
  memory: Memory
  flops: float         # XLA's count for one device's program.
  compile_sec: float


class Steps:
  """The trainer's steps of `config` on `devices`, compiled on demand at any
  global batch, each once; `compiled` keeps them by (step, batch)."""

  def __init__(self, config, devices: Sequence, num_processes: int):
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P
    from resizer import tasks, train
    self.config, self.devices = config, list(devices)
    parts = train.build(config, len(devices), num_processes)
    self.eval_model = parts.eval_model
    self.mesh = train.make_mesh(self.devices)
    total_steps = config.total_steps or max(
        1, int(config.num_epochs * NOMINAL_STEPS_PER_EPOCH))
    self.program = train.make_program(config, parts, self.mesh,
                                      NOMINAL_STEPS_PER_EPOCH, total_steps)
    self.state = jax.eval_shape(self.program.init, jax.random.key(0))
    key = jax.random.key(0)
    self.key = jax.ShapeDtypeStruct(key.shape, key.dtype,
                                    sharding=NamedSharding(self.mesh, P()))
    self.batch = functools.partial(train.abstract_batch, config,
                                   mesh=self.mesh, label=tasks.label_spec(config))
    self.compiled: dict[tuple[str, int], Compiled] = {}

  def lower(self, step: str, batch_size: int):
    """The 'train' or 'eval' step lowered at a global batch of `batch_size`."""
    if step == 'train':
      return self.program.train_step.lower(self.state,
                                           self.batch(batch_size), self.key)
    return self.program.eval_step.lower(
        self.state, self.batch(batch_size, evaluation=True))

  def compile(self, step: str, batch_size: int) -> Compiled:
    """Raises OutOfMemory if the compiler says the program cannot fit."""
    if (step, batch_size) not in self.compiled:
      self.compiled[step, batch_size] = _compile(self.lower(step, batch_size),
                                                 batch_size)
    return self.compiled[step, batch_size]


def _compile(lowered, batch_size: int) -> Compiled:
  t0 = time.perf_counter()
  try:
    compiled = lowered.compile()
  except Exception as e:  # XLA's own error type differs between versions.
    oom = out_of_memory(e)
    if oom is None:
      raise
    raise oom from None
  cost = compiled.cost_analysis() or {}
  return Compiled(batch_size, Memory.of(compiled), float(cost.get('flops', 0)),
                  time.perf_counter() - t0)


def largest_batch(fits: Callable[[int], bool], multiple: int, start: int
                  ) -> int:
  """The largest batch, a multiple of `multiple`, for which `fits` holds
  (0 if none); `fits` must hold for every batch below one where it holds.
  From `start` (a guess, rounded to a multiple): when the guess is right it
  costs two calls (it fits, one multiple more does not); otherwise it
  doubles (or halves) to a bracket and bisects it."""
  guess = max(multiple, round(start / multiple) * multiple)
  if fits(guess):
    lo, hi = guess, guess + multiple
    while fits(hi):
      lo, hi = hi, hi * 2
  else:
    lo, hi = 0, guess
    while hi > multiple:
      half = max(multiple, hi // 2 // multiple * multiple)
      if fits(half):
        lo = half
        break
      hi = half
    if lo == 0:
      return 0
  # lo fits, hi does not; both are multiples of `multiple`.
  while hi - lo > multiple:
    mid = lo + (hi - lo) // 2 // multiple * multiple
    lo, hi = (mid, hi) if fits(mid) else (lo, mid)
  return lo


def linear_guess(need_at: Callable[[int], float | None], batch: int,
                 multiple: int, limit: float) -> int:
  """The largest batch whose need stays under `limit` if the need grew
  linearly with the batch, from two batches that compile among `batch`,
  twice it, half and a quarter of it (`need_at` returns None for a batch
  that does not). A first guess for largest_batch, which checks it."""
  points = {}
  for b in (batch, batch * 2, batch // 2, batch // 4):
    b = max(multiple, b // multiple * multiple)
    if b not in points and len(points) < 2:
      need = need_at(b)
      if need is not None:
        points[b] = need
  if len(points) < 2:
    return min(points, default=multiple)
  (b1, n1), (b2, n2) = points.items()
  per_image = (n2 - n1) / (b2 - b1)
  if per_image <= 0:
    return max(b1, b2)
  return int((limit - (n1 - per_image * b1)) / per_image)


def _mib(n_bytes: float) -> float:
  return round(n_bytes / 2**20, 1)


def _gib(n_bytes: float) -> float:
  return round(n_bytes / 2**30, 2)


def check(config, devices: Sequence, num_processes: int,
          hbm_gib: float | None, search_batch: bool = True,
          log: Callable[[str], None] = print) -> dict[str, Any]:
  """Compiles `config`'s train and eval steps for `devices` (every chip of
  a slice) and returns the report that the module docstring lists, logging
  it line by line. `hbm_gib`: one device's memory (None: nothing to check
  against). Whether it fits is in report['fits']; `why_not` says why not."""
  steps = Steps(config, devices, num_processes)
  n = len(steps.devices)
  accumulate = config.optim.accumulate_steps
  report: dict[str, Any] = dict(
      config=config.name, devices=n, processes=num_processes,
      device_kind=steps.devices[0].device_kind, hbm_gib=hbm_gib,
      resizer=config.resizer.kind, global_batch=config.input.batch_size,
      eval_batch=config.input.eval_batch_size, dtype=config.model.dtype,
      remat=config.model.remat, accumulate_steps=accumulate)
  log(f"{report['config']}: {n} x {report['device_kind']} in "
      f'{num_processes} host(s)'
      + ('' if hbm_gib is None else f', {hbm_gib:g} GiB HBM each')
      + f"; {report['dtype']}, remat={report['remat']}, "
      f'accumulate_steps={accumulate}.')

  def fits(c: Compiled) -> bool:
    return hbm_gib is None or c.memory.total <= hbm_gib * 2**30

  for step, size in (('train', config.input.batch_size),
                     ('eval', config.input.eval_batch_size)):
    try:
      c = steps.compile(step, size)
    except OutOfMemory as oom:
      report[step] = dict(batch=size, fits=False, compiler=str(oom),
                          needed_gib=oom.needed_gib,
                          available_gib=oom.available_gib)
      log(f'{step} step at a global batch of {size}: the compiler refuses '
          f'it: {oom}')
      continue
    m = c.memory
    row = report[step] = dict(
        batch=size, per_device_batch=size // n, argument_mib=_mib(m.argument),
        output_mib=_mib(m.output), alias_mib=_mib(m.alias),
        temp_mib=_mib(m.temp), total_gib=_gib(m.total), fits=fits(c),
        compile_sec=round(c.compile_sec, 1))
    verdict = ''
    if hbm_gib is not None:
      row['headroom_gib'] = _gib(hbm_gib * 2**30 - m.total)
      verdict = (f" of {hbm_gib:g} GiB: fits, {row['headroom_gib']:g} GiB "
                 f"({100 * row['headroom_gib'] / hbm_gib:.0f}%) to spare"
                 if row['fits'] else f' of {hbm_gib:g} GiB: does NOT fit')
    log(f"{step} step, global batch {size} ({size // n} per device), "
        f"compiled in {c.compile_sec:.0f} s. Per device: arguments "
        f"{row['argument_mib']} MiB + outputs {row['output_mib']} MiB "
        f"(of which {row['alias_mib']} MiB reuse donated arguments) + "
        f"temporaries {row['temp_mib']} MiB = {row['total_gib']} GiB"
        f'{verdict}.')

  from resizer.models import costs
  report['forward_gflops_per_image'] = costs.model_summary(
      config, steps.eval_model)['gflops_per_image']
  train = steps.compiled.get(('train', config.input.batch_size))
  if train is not None:  # XLA counts one device's program.
    report['train_gflops_per_image'] = round(
        train.flops * n / config.input.batch_size / 1e9, 3)
  log(f"GFLOPs per image: forward {report['forward_gflops_per_image']:g}"
      + (f", train step {report['train_gflops_per_image']:g}"
         if train is not None else '') + '.')

  if search_batch and hbm_gib is not None:
    limit = hbm_gib * 2**30
    multiple = n * accumulate

    def need_at(size: int) -> float | None:
      try:
        return steps.compile('train', size).memory.total
      except OutOfMemory:
        return None

    def train_fits(size: int) -> bool:
      need = need_at(size)
      return need is not None and need <= limit

    # Past `cap` the exact figure matters little, and compiling huge
    # programs is slow: the search stops there.
    cap = SEARCH_CAP * config.input.batch_size
    if train_fits(cap):
      best = cap
    else:
      guess = linear_guess(need_at, config.input.batch_size, multiple, limit)
      best = largest_batch(train_fits, multiple, min(guess, cap - multiple))
    report['max_global_batch'] = best
    report['max_global_batch_is_cap'] = best == cap
    tried = sorted(b for s, b in steps.compiled if s == 'train')
    log(f"Largest global batch whose train step fits: "
        f"{'at least ' if best == cap else ''}{best} ({best // n} per "
        f'device); compiled at {tried}.')
  report['fits'] = all(report[s]['fits'] for s in ('train', 'eval'))
  report['compile_sec'] = round(sum(c.compile_sec
                                    for c in steps.compiled.values()), 1)
  return report


def why_not(report: dict[str, Any]) -> str:
  """One line: which step does not fit, by how much, and what to change."""
  for step in ('train', 'eval'):
    row = report[step]
    if row['fits']:
      continue
    key = 'batch_size' if step == 'train' else 'eval_batch_size'
    if 'total_gib' in row:
      needed, limit = row['total_gib'], report['hbm_gib']
      amount = f'needs {needed:g} GiB per device, over the {limit:g} GiB HBM'
    elif row.get('needed_gib'):
      needed, limit = row['needed_gib'], row['available_gib']
      amount = (f'needs {needed:g} GiB of temporaries per device, over the '
                f"{limit:g} GiB the TPU compiler can use")
    else:
      return f"the {step} step at a global batch of {row['batch']} does not fit: {row['compiler']}"
    multiple = report['devices'] * (
        report['accumulate_steps'] if step == 'train' else 1)
    best = report.get('max_global_batch') if step == 'train' else None
    if best:
      batch = f'--config.input.{key}={best} or less'
    else:  # Memory grows about linearly with the batch.
      estimate = max(multiple, int(row['batch'] * limit / needed)
                     // multiple * multiple)
      batch = (f'--config.input.{key} to about {estimate} or less (python -m '
               'resizer.preflight finds the largest)')
    fixes = [batch]
    if step == 'train':
      fixes.append(f"--config.optim.accumulate_steps="
                   f"{2 * report['accumulate_steps']} (the same global "
                   'batch in micro-batches, with fewer activations alive)')
      if report['remat'] == 'none' and report['resizer'] in ('learned',
                                                             'muller'):
        fixes.append('--config.model.remat=resizer')
    return (f"the {step} step at a global batch of {row['batch']} "
            f"({report['devices']} devices) {amount}; set "
            + ', or '.join(fixes) + '.')
  return ''


def target(topology: str | None) -> tuple[list, int, float | None, str]:
  """(devices, host count, HBM GiB per device, name) of a --topology value,
  or of the devices here without one."""
  if topology:
    tpu_slice = slices.parse(topology)
    devices = slice_devices(tpu_slice)
    hosts = len({d.process_index for d in devices})
    return devices, hosts, tpu_slice.hbm_gib, tpu_slice.name
  import jax
  devices = jax.devices()
  limit = (devices[0].memory_stats() or {}).get('bytes_limit')
  return (devices, jax.process_count(), limit and limit / 2**30,
          f'{len(devices)} local {devices[0].platform} devices')


def main(argv: Sequence[str]) -> None:
  from absl import flags
  FLAGS = flags.FLAGS
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')  # TensorFlow's INFO.
  del argv  # cli.run refuses positional arguments.
  cli.import_tensorflow()
  import jax
  if FLAGS.topology:  # Nothing runs here: no local accelerator is needed.
    jax.config.update('jax_platforms', 'cpu')
  from resizer import config_checks
  config = cli.config('config')
  if not config.name:
    with config.unlocked():
      config.name = FLAGS['config'].config_filename
  try:
    devices, hosts, hbm, where = target(FLAGS.topology)
    if FLAGS.hbm_gib:
      hbm = FLAGS.hbm_gib
    print(f'Pre-flight for {where}:', flush=True)
    report = check(config, devices, hosts, hbm,
                   search_batch=FLAGS.search_batch,
                   log=lambda line: print(line, flush=True))
  except (PreflightError, slices.UnknownSlice, config_checks.ConfigError,
          ValueError) as e:
    cli.exit_with_error(str(e))
  report['target'] = where
  print(json.dumps(report), flush=True)
  if not report['fits']:
    cli.exit_with_error(f"{report['config']} does not fit {where}: "
                        f'{why_not(report)}')


if __name__ == '__main__':
  from absl import flags
  from ml_collections import config_flags
  # Flags only when run as a command (see tests/test_package.py).
  config_flags.DEFINE_config_file(
      'config', None, 'Experiment config file[:argument], as resizer.main.',
      lock_config=True)
  flags.DEFINE_string(
      'topology', None, 'The Cloud TPU slice to compile for: an accelerator '
      'type (v4-32, v5litepod-16, v5p-8, v6e-8) or a topology (v5e:2x2); '
      'default: the devices here.')
  flags.DEFINE_float('hbm_gib', None, "Memory per device to check against "
                     "(default: the TPU generation's HBM, or what the local "
                     'accelerator reports; none on CPU).')
  flags.DEFINE_bool('search_batch', True, 'Also find the largest global batch '
                    'whose train step fits, by compiling it at other batches.')
  flags.mark_flags_as_required(['config'])
  cli.run(main, __doc__)

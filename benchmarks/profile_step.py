r"""Where one setting's train step spends its time, operation by operation.

  python benchmarks/profile_step.py --config=configs/imagenet_resnet50.py \
      --resizer=learned:448 --batch_size=8 --dtype=float32

Compiles the trainer's step as `train_step.py` does, traces `--steps` steps
with `jax.profiler`, and joins each traced XLA operation to the compiled
HLO: its shape and the JAX operation it came from (`op_name`, which names
the module path, e.g. `resizer/conv_in` or `backbone/conv_stem`). Prints the
`--top` operations by time per step, then one JSON line with the time per
step of each part ('resizer', 'backbone', 'other': loss, optimizer, copies
and layout changes that carry no module path).

On CPU, XLA:CPU's per-operation events need
`--xla_cpu_enable_xprof_traceme`, which this script adds to XLA_FLAGS.
Convolutions there run asynchronously: their time runs from their start
event to their `end:` event. Operations on the two sides of a 2-core
machine overlap, so the parts can add up to more than the step.
"""

import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                           + ' --xla_cpu_enable_xprof_traceme=true')

import jax  # pylint: disable=g-import-not-at-top

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step  # pylint: disable=g-import-not-at-top

from resizer.models import composite  # pylint: disable=g-import-not-at-top
from resizer.models.common import CONV_IMPLS  # pylint: disable=g-import-not-at-top

# Host-side wrappers around the operations, not operations themselves.
_NOT_OPS = ('ThunkExecutor', 'SlinkyThreadPool', 'ThreadpoolListener')


def hlo_info(hlo_text: str) -> dict[str, tuple[str, str]]:
  """Instruction name -> (result shape, JAX op_name) from compiled HLO."""
  info = {}
  for line in hlo_text.splitlines():
    match = re.match(r'\s*(?:ROOT )?%(\S+) = (\S+) ', line)
    if match:
      op = re.search(r'op_name="([^"]*)"', line)
      info[match.group(1)] = (match.group(2), op.group(1) if op else '')
  return info


def op_times(profile) -> collections.Counter:
  """Total nanoseconds per XLA operation name in a `jax.profiler` trace."""
  device_planes = [p for p in profile.planes if p.name.startswith('/device:')]
  totals = collections.Counter()
  if device_planes:  # GPU/TPU: the device's own op timeline.
    for plane in device_planes:
      for line in plane.lines:
        if line.name == 'XLA Ops':
          for event in line.events:
            totals[event.name] += event.duration_ns
    return totals
  # In time order across threads: an op may start on one and end on another.
  events = sorted(
      ((event.start_ns, event.duration_ns, event.name)
       for plane in profile.planes for line in plane.lines
       if line.name.startswith('tf_XLA') for event in line.events),
      key=lambda e: e[0])
  started = {}
  for start_ns, duration_ns, name in events:
    if name.startswith('end: '):
      start = started.pop(name[5:], None)
      if start is not None:  # Time from the op's start event to its end.
        totals[name[5:]] += start_ns - start[0] - start[1]
    elif not name.startswith(_NOT_OPS):
      started[name] = (start_ns, duration_ns)
      totals[name] += duration_ns
  return totals


def part_of(op_name: str) -> str:
  for part in ('resizer', 'backbone'):
    if f'/{part}/' in op_name or op_name.endswith(f'/{part}'):
      return part
  return 'other'


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', required=True)
  parser.add_argument('--resizer', default='learned:448',
                      help='kind:resolution[:remat], as in train_step.py')
  parser.add_argument('--out_size', type=int, default=224)
  parser.add_argument('--model', default=None)
  parser.add_argument('--batch_size', type=int, default=8)
  parser.add_argument('--dtype', default=None, choices=composite.DTYPES)
  parser.add_argument('--remat', default=None, choices=composite.REMAT)
  parser.add_argument('--conv_impl', default='cpu_forms',
                      choices=list(CONV_IMPLS),
                      help="config.model.conv_impl, as benchmarks/train_step.py "
                           "takes it")
  parser.add_argument('--steps', type=int, default=2)
  parser.add_argument('--top', type=int, default=30)
  args = parser.parse_args(argv)

  setting = train_step.make_setting(args, args.resizer, jax.devices())
  config = setting.config
  setting.run(1)
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    step_sec = setting.run(args.steps)
    jax.profiler.stop_trace()
    path, = glob.glob(f'{trace_dir}/**/*.xplane.pb', recursive=True)
    profile = jax.profiler.ProfileData.from_file(path)
    totals = op_times(profile)

  info = hlo_info(setting.compiled.as_text())
  ms = lambda ns: ns / 1e6 / args.steps
  parts = collections.Counter()
  print('| ms/step | operation | shape | from |\n|---|---|---|---|')
  for rank, (name, ns) in enumerate(totals.most_common()):
    shape, op_name = info.get(name, ('', ''))
    parts[part_of(op_name)] += ns
    if rank < args.top:
      print(f'| {ms(ns):.1f} | {name} | {shape} | {op_name[-70:]} |')
  row = dict(model=config.model.name, resizer=config.resizer.kind,
             in_size=list(setting.in_size), batch_size=args.batch_size,
             device_kind=jax.devices()[0].device_kind,
             step_ms=round(1e3 * step_sec, 2),
             op_ms_per_step={k: round(ms(v), 2) for k, v in parts.items()})
  print(json.dumps(row), flush=True)
  return row


if __name__ == '__main__':
  main()

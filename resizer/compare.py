r"""The paper's comparison as one command: learned resizers against fixed
resizes that cost as much or more, over seeds.

  python -m resizer.compare --config=configs/demo.py --workdir=runs/demo_compare
  python -m resizer.compare --config=configs/demo.py --workdir=runs/demo_compare \
      --print_only          # the resizer.main commands, for a cluster

The grid, each run an ordinary `resizer.main` invocation in its own
subfolder of --workdir, × --seeds:

  - the config's learned resizer and MULLER, at its sizes;
  - `resizer=none` (the input pipeline resizes) at a ladder of backbone
    resolutions from the config's target size up, √2 apart, until a rung
    costs at least --flops_margin × the learned model's forward GFLOPs (or
    reaches the resizer's input size), once per --fixed variant
    (interpolation, '+aa' for antialiasing).

Runs go one after another; a finished run is skipped and an interrupted
one resumes, so rerunning the command continues the grid. Then
`resizer.report` writes the table, the pairing of each learned run with its
FLOP-matched fixed baseline, and the figure (metric against GFLOPs), into
--workdir.
"""

import dataclasses
import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys
import ml_collections
from absl import flags, logging

from resizer import cli, paths, report, run_record


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of the grid: a name and its resizer.main flags."""
  name: str
  resizer: str                  # The config's resizer= argument.
  overrides: tuple[tuple[str, str], ...]
  gflops: float

  def command(self, config_arg: str, workdir: str, seed: int,
              extra: list[str]) -> list[str]:
    file, _, arg = config_arg.partition(':')
    arg = ','.join(filter(None, [arg, f'resizer={self.resizer}']))
    return [sys.executable, '-m', 'resizer.main', f'--config={file}:{arg}',
            f'--workdir={paths.resolve(workdir) / f"{self.name}_seed{seed}"}',
            f'--config.seed={seed}',
            *[f'--config.{k}={v}' for k, v in self.overrides],
            *[f'--config.{s}' for s in extra]]


def load_config(config_arg: str, resizer: str | None = None
                ) -> ml_collections.ConfigDict:
  """The config of file[:arg], as resizer.main reads it, with `resizer=`
  added to its argument if given, and the convention of `weights=` read
  (run_record.resolve_convention)."""
  file, _, arg = config_arg.partition(':')
  if resizer and 'resizer=' in arg:
    raise cli.UserError(
        f'--config={config_arg}: compare chooses each run\'s resizer '
        '(--learned, --fixed); drop resizer= from --config.')
  if not os.path.exists(file):
    raise cli.UserError(f'--config={file}: no such config file.')
  spec = importlib.util.spec_from_file_location('loaded_config', file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  arg = ','.join(filter(None, [arg, resizer and f'resizer={resizer}']))
  try:
    config = module.get_config(arg or None)
    run_record.resolve_convention(config)
  except ValueError as e:
    raise cli.UserError(f'--config={config_arg}: {e}') from None
  return config


def _apply(config: ml_collections.ConfigDict, overrides) -> None:
  """Sets KEY=VALUE texts as --config.KEY=VALUE would (for the types the
  grid uses: bool, int, float, str and the object-typed sizes)."""
  for key, value in overrides:
    *blocks, name = key.split('.')
    node = config
    for block in blocks:
      node = node[block]
    try:
      field_type = node.get_type(name)  # object for sizes: any text goes.
      if field_type is bool:
        value = value.lower() in ('true', '1')
      elif field_type in (int, float):
        value = field_type(value)
    except (KeyError, AttributeError):
      raise cli.UserError(f'--set {key}={value}: the config has no key '
                          f'{key!r}.') from None
    except ValueError:
      expected = {int: 'an integer', float: 'a number'}[field_type]
      raise cli.UserError(f'--set {key}={value}: expected {expected}.'
                          ) from None
    node[name] = value


def run_config(config_arg: str, resizer: str, overrides, extra
               ) -> ml_collections.ConfigDict:
  """The config one run of the grid trains: `config_arg` with `resizer=`,
  the --set `extra` and the run's own `overrides`."""
  config = load_config(config_arg, resizer)
  _apply(config, [tuple(s.split('=', 1)) for s in extra])
  _apply(config, overrides)
  return config


def _gflops(config_arg: str, resizer: str, overrides, extra) -> float:
  from resizer.models import costs
  config = run_config(config_arg, resizer, overrides, extra)
  return costs.model_summary(config)['gflops_per_image']


def check_runs(config_arg: str, runs: list['Run'], extra) -> None:
  """Each run's config through the trainer's own checks, before the first
  run starts: UserError naming the first run the trainer would refuse."""
  import jax
  cli.import_tensorflow()
  from resizer import train
  for run in runs:
    try:
      train.build(run_config(config_arg, run.resizer, run.overrides, extra),
                  jax.device_count(), 1)
    except ValueError as e:
      raise cli.UserError(f'run {run.name}: {e}') from None


def _variant(spec: str) -> tuple[str, bool]:
  interpolation, _, aa = spec.partition('+')
  if aa not in ('', 'aa'):
    raise cli.UserError(f"--fixed={spec!r}: expected interpolation[+aa].")
  return interpolation, aa == 'aa'


def grid(config_arg: str, learned: list[str], fixed: list[str],
         flops_margin: float, extra: list[str]) -> list[Run]:
  """The runs (one seed's worth) of the comparison of `config_arg`."""
  from resizer.models import composite
  base = load_config(config_arg, learned[0] if learned else 'none')
  _apply(base, [tuple(s.split('=', 1)) for s in extra])
  in_size, out_size = composite.sizes(base.resizer)
  runs = [Run(choice, choice, (), _gflops(config_arg, choice, (), extra))
          for choice in learned]
  target = max([r.gflops for r in runs] or [0.0]) * flops_margin
  cost = {}  # GFLOPs by rung size: the variants share the backbone.
  for spec in fixed:
    interpolation, antialias = _variant(spec)
    for k in range(0, 64):
      scale = math.sqrt(2) ** k
      size = [min(i, max(8, round(o * scale / 8) * 8))
              for o, i in zip(out_size, in_size)]
      if k and size == list(prev):  # Reached the input size.
        break
      prev = size
      text = f'{size[0]}x{size[1]}'
      overrides = (('resizer.in_size', text), ('resizer.out_size', text),
                   ('input.interpolation', interpolation),
                   ('input.antialias', str(antialias).lower()))
      if text not in cost:
        cost[text] = _gflops(config_arg, 'none', overrides, extra)
      gflops = cost[text]
      runs.append(Run(f"none_{spec.replace('+', '_')}_{text}", 'none',
                      overrides, gflops))
      if gflops >= target:
        break
  return runs


def finished(run_dir) -> bool:
  try:
    report.load_results(str(run_dir))
    return True
  except report.ResultsError:
    return False


def main(argv):
  del argv  # cli.run refuses positional arguments.
  logging.set_verbosity(logging.WARNING)
  args = flags.FLAGS
  runs = grid(args.config, args.learned, args.fixed, args.flops_margin,
              args.set)
  check_runs(args.config, runs, args.set)
  root = paths.resolve(args.workdir)
  commands = [(run, seed, run.command(args.config, str(root), seed, args.set))
              for run in runs for seed in range(args.seeds)]
  if args.print_only:
    for _, _, command in commands:
      print('python ' + ' '.join(shlex.quote(word) for word in command[1:]))
    return
  root.mkdir(parents=True, exist_ok=True)
  (root / 'grid.json').write_text(json.dumps(
      [dict(name=r.name, resizer=r.resizer, overrides=dict(r.overrides),
            gflops_per_image=r.gflops) for r in runs], indent=2))
  failed = []
  for i, (run, seed, command) in enumerate(commands, 1):
    run_dir = root / f'{run.name}_seed{seed}'
    if finished(run_dir):
      print(f'[{i}/{len(commands)}] {run_dir.name}: finished, skipped',
            flush=True)
      continue
    print(f'[{i}/{len(commands)}] {run_dir.name} '
          f'({run.gflops:.3f} GFLOPs/img)', flush=True)
    if subprocess.run(command).returncode:
      failed.append(run_dir.name)
  run_dirs = [str(root / f'{r.name}_seed{s}') for r, s, _ in commands]
  text, errors = report.report(run_dirs, str(root / 'compare'))
  paths.write_text_atomic(root / 'report.md', text + '\n')
  print(text)
  for line in errors:
    print(line, file=sys.stderr)
  if failed:
    cli.exit_with_error(f'{len(failed)} runs failed: {", ".join(failed)}')


if __name__ == '__main__':
  flags.DEFINE_string('config', None,
                      'Config file[:arg], as resizer.main takes it.')
  flags.DEFINE_string('workdir', None,
                      'Root of the grid: one subfolder per run.')
  flags.DEFINE_integer('seeds', 3, 'Seeds 0..N-1 of every setting.',
                       lower_bound=1)
  flags.DEFINE_list(
      'fixed', ['bilinear', 'bilinear+aa', 'bicubic', 'bicubic+aa', 'area'],
      "The input pipeline's resizes on the ladder: interpolation[+aa].")
  flags.DEFINE_list('learned', ['learned', 'muller'],
                    'Resizer choices at the config sizes.')
  flags.DEFINE_float(
      'flops_margin', 1.0, 'The ladder climbs until a rung costs this many '
      "times the learned model's GFLOPs (1: equal compute; 0: only the "
      'first rung).', lower_bound=0.0)
  flags.DEFINE_multi_string(
      'set', [], 'KEY=VALUE passed to every run as --config.KEY=VALUE.')
  flags.DEFINE_bool('print_only', False,
                    'Print the commands instead of running them.')
  flags.mark_flags_as_required(['config', 'workdir'])
  cli.run(main, __doc__)

r"""A markdown table comparing finished runs, from their results.json files.

  python -m resizer.report runs/demo_*            # one row per setting
  python -m resizer.report runs/* --out=report.md

Runs that differ only in their seed are one row: metrics as mean ± sample
standard deviation over the seeds (n in the last column). A directory
without a readable results.json is named on stderr and the others are still
reported; the exit status is then 1.
"""

import collections
import json
import sys
from typing import Any

import numpy as np
from absl import app, flags

from resizer import paths

# What makes two runs the same setting (everything but the seed).
SETTING_KEYS = ('dataset', 'model', 'resizer', 'interpolation', 'antialias',
                'in_size', 'out_size', 'steps', 'global_batch_size', 'dtype')
PERCENT_METRICS = ('top1_accuracy', 'top5_accuracy', 'accuracy',
                   'binary_accuracy')


class ResultsError(ValueError):
  """A run directory whose results cannot be read."""


def load_results(run_dir: str) -> dict[str, Any]:
  """The results.json of `run_dir`, checked for the fields the table needs."""
  path = paths.resolve(run_dir) / 'results.json'
  try:
    results = json.loads(path.read_text())
  except FileNotFoundError:
    raise ResultsError(f'{path}: missing (is the run finished?)') from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ResultsError(f'{path}: not valid JSON ({e})') from None
  if not isinstance(results, dict):
    raise ResultsError(f'{path}: expected a JSON object')
  missing = [k for k in (*SETTING_KEYS, 'eval', 'main_metric', 'seed',
                         'trainable_params', 'gflops_per_image',
                         'wall_time_sec') if k not in results]
  if missing:
    raise ResultsError(f'{path}: missing keys {missing}')
  return results


def _resizer_label(r: dict[str, Any]) -> str:
  if r['resizer'] == 'none':
    return 'none (pipeline)'
  if r['resizer'] == 'fixed':
    return r['interpolation'] + (' +AA' if r['antialias'] else '')
  return r['resizer'] + (' +AA' if r['antialias'] else '')


def _mean_std(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
  values = np.asarray(values, np.float64) * scale
  if len(values) == 1:
    return f'{values[0]:.{digits}f}'
  return f'{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}'


def table(runs: list[dict[str, Any]]) -> str:
  """The markdown comparison table of `runs`, one row per setting."""
  groups = collections.defaultdict(list)
  for r in runs:
    groups[tuple(json.dumps(r[k]) for k in SETTING_KEYS)].append(r)
  metric_names = []
  for r in runs:
    for name in [r['main_metric'], *sorted(r['eval'])]:
      if name not in metric_names and name != 'num_examples':
        metric_names.append(name)
  header = ['dataset', 'backbone', 'resizer', 'in → out', 'params',
            'GFLOPs/img', *[f'{m} (%)' if m in PERCENT_METRICS else m
                             for m in metric_names],
            'steps', 'wall time (s)', 'seeds']
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join('---' for _ in header) + '|']
  for group in groups.values():
    r0 = group[0]
    cells = [r0['dataset'], r0['model'], _resizer_label(r0),
             f"{'x'.join(map(str, r0['in_size']))} → "
             f"{'x'.join(map(str, r0['out_size']))}",
             f"{r0['trainable_params']:,}", f"{r0['gflops_per_image']:.3f}"]
    for m in metric_names:
      values = [r['eval'][m] for r in group if m in r['eval']]
      pct = m in PERCENT_METRICS
      cells.append(_mean_std(values, 100.0 if pct else 1.0, 1 if pct else 4)
                   if values else '')
    cells += [str(r0['steps']), _mean_std([r['wall_time_sec'] for r in group],
                                          digits=0),
              str(len(group))]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def report(run_dirs: list[str]) -> tuple[str, list[str]]:
  """(table of the readable runs, error lines of the others)."""
  runs, errors = [], []
  for d in run_dirs:
    try:
      runs.append(load_results(d))
    except ResultsError as e:
      errors.append(f'error: {e}')
  return (table(runs) if runs else ''), errors


_OUT = flags.DEFINE_string('out', None, 'Also write the table to this file.')


def main(argv):
  run_dirs = argv[1:]
  if not run_dirs:
    raise app.UsageError('Give one or more run directories.')
  text, errors = report(run_dirs)
  for line in errors:
    print(line, file=sys.stderr)
  if text:
    print(text)
    if _OUT.value:
      paths.write_text_atomic(_OUT.value, text + '\n')
  sys.exit(1 if errors or not text else 0)


if __name__ == '__main__':
  app.run(main)

r"""A markdown table comparing finished runs, from their results.json files.

  python -m resizer.report runs/demo_*            # one row per setting
  python -m resizer.report runs/* --out=report.md --figure=report

Runs that differ only in their seed are one row: metrics as mean ± sample
standard deviation over the seeds (n in the last column). A directory
without a readable results.json is named on stderr and the others are still
reported; the exit status is then 1.

After the table, each learned resizer (learned, MULLER) is paired with its
FLOP-matched fixed baseline: the fixed-resize setting of least forward
GFLOPs/img at or above its own, with the gap in the main metric and the
larger of the two seed spreads. --figure=PATH draws the paper's figure,
main metric against GFLOPs/img, one series per resizer family, mean ± std
over seeds, to PATH.png and PATH.svg.
"""

import collections
import io
import json
import sys
from typing import Any

import numpy as np
from absl import flags

from resizer import cli, paths, run_record

# What makes two runs the same setting (everything but the seed).
SETTING_KEYS = ('dataset', 'model', 'resizer', 'interpolation', 'antialias',
                'in_size', 'out_size', 'steps', 'global_batch_size', 'dtype')
PERCENT_METRICS = ('top1_accuracy', 'top5_accuracy', 'accuracy',
                   'binary_accuracy')


ResultsError = run_record.ResultsError


def load_results(run_dir: str) -> dict[str, Any]:
  """The results.json of `run_dir`, checked for the fields the table needs."""
  results = run_record.load_results(run_dir)
  missing = [k for k in (*SETTING_KEYS, 'eval', 'main_metric', 'seed',
                         'trainable_params', 'gflops_per_image',
                         'wall_time_sec') if k not in results]
  if missing:
    raise ResultsError(f'{paths.resolve(run_dir) / run_record.RESULTS_JSON}: '
                       f'missing keys {missing}')
  return results


def _resizer_label(r: dict[str, Any]) -> str:
  if r['resizer'] == 'none':  # The input pipeline's resize (TensorFlow).
    return (f"{r['interpolation']} (pipeline)"
            + (' +AA' if r['antialias'] else ''))
  if r['resizer'] == 'fixed':
    return r['interpolation'] + (' +AA' if r['antialias'] else '')
  return r['resizer'] + (' +AA' if r['antialias'] else '')


def _mean_std(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
  values = np.asarray(values, np.float64) * scale
  if len(values) == 1:
    return f'{values[0]:.{digits}f}'
  return f'{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}'


LEARNED = ('learned', 'muller')


def settings(runs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
  """`runs` grouped by setting (everything but the seed), in first-seen
  order."""
  groups = collections.defaultdict(list)
  for r in runs:
    groups[tuple(json.dumps(r[k]) for k in SETTING_KEYS)].append(r)
  return list(groups.values())


def family(r: dict[str, Any]) -> str:
  """The figure's series of a run: its resizer without its sizes."""
  return _resizer_label(r)


def _main_values(group: list[dict[str, Any]]) -> np.ndarray:
  """The group's main metric (in % where it is a fraction), over the seeds
  whose evaluation has it."""
  r0 = group[0]
  scale = 100.0 if r0['main_metric'] in PERCENT_METRICS else 1.0
  return np.asarray([r['eval'][r0['main_metric']] for r in group
                     if r0['main_metric'] in r['eval']]) * scale


def _std(values: np.ndarray) -> float:
  return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def pairs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Each learned setting with its FLOP-matched fixed baseline: among the
  fixed settings of the same dataset, backbone and metric, those of least
  GFLOPs/img >= its own, and of those the best (several fixed variants
  share a resolution; the strongest is the fair one); None if every fixed
  one costs less. With means, seed spreads and the gap in the main metric.
  Settings without the main metric in any evaluation are left out."""
  groups = [g for g in settings(runs) if len(_main_values(g))]

  def comparable(g):
    return tuple(g[0][k] for k in ('dataset', 'model', 'main_metric'))

  out = []
  for group in groups:
    r0 = group[0]
    if r0['resizer'] not in LEARNED:
      continue
    costlier = [g for g in groups if g[0]['resizer'] not in LEARNED
                and comparable(g) == comparable(group)
                and g[0]['gflops_per_image'] >= r0['gflops_per_image']]
    least = min((g[0]['gflops_per_image'] for g in costlier), default=None)
    match = max((g for g in costlier if g[0]['gflops_per_image'] == least),
                key=lambda g: _main_values(g).mean(), default=None)
    ours = _main_values(group)
    row = dict(learned=group, fixed=match, metric=r0['main_metric'],
               mean=float(ours.mean()), std=_std(ours))
    if match is not None:
      theirs = _main_values(match)
      row.update(fixed_mean=float(theirs.mean()), fixed_std=_std(theirs),
                 gap=float(ours.mean() - theirs.mean()),
                 spread=max(_std(ours), _std(theirs)))
    out.append(row)
  return out


def _setting_label(r: dict[str, Any]) -> str:
  return (f"{_resizer_label(r)} {'x'.join(map(str, r['in_size']))}→"
          f"{'x'.join(map(str, r['out_size']))}")


def pairs_table(runs: list[dict[str, Any]]) -> str:
  """The markdown pairing of learned settings with FLOP-matched ones."""
  rows = pairs(runs)
  if not rows or all(row['fixed'] is None for row in rows) and not any(
      r['resizer'] not in LEARNED for r in runs):
    return ''
  metric = rows[0]['metric']
  unit = ' (%)' if metric in PERCENT_METRICS else ''
  lines = ['| learned | GFLOPs/img | ' + metric + unit + ' | fixed, FLOP-matched '
           '| GFLOPs/img | ' + metric + unit + ' | gap | larger seed std |',
           '|---|---|---|---|---|---|---|---|']
  for row in rows:
    r0 = row['learned'][0]
    cells = [_setting_label(r0), f"{r0['gflops_per_image']:.3f}",
             f"{row['mean']:.2f} ± {row['std']:.2f} (n={len(row['learned'])})"]
    if row['fixed'] is None:
      cells += ['none costs as much', '', '', '', '']
    else:
      f0 = row['fixed'][0]
      cells += [_setting_label(f0), f"{f0['gflops_per_image']:.3f}",
                f"{row['fixed_mean']:.2f} ± {row['fixed_std']:.2f} "
                f"(n={len(row['fixed'])})",
                f"{row['gap']:+.2f}", f"{row['spread']:.2f}"]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def figure(runs: list[dict[str, Any]], path: str) -> list[str]:
  """Draws the main metric against GFLOPs/img, one series per family, mean
  ± std over seeds, to path.png and path.svg; returns the files."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  series = collections.defaultdict(list)
  for group in settings(runs):
    values = _main_values(group)
    if not len(values):
      continue
    series[family(group[0])].append(
        (group[0]['gflops_per_image'], values.mean(), _std(values)))
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  for name, points in sorted(series.items()):
    x, y, err = zip(*sorted(points))
    learned = name.split()[0] in LEARNED
    ax.errorbar(x, y, yerr=err, label=name, capsize=3,
                marker='*' if learned else 'o', markersize=10 if learned else 5,
                linestyle='none' if learned else '-')
  metric = runs[0]['main_metric']
  ax.set_xscale('log')
  ax.set_xlabel('forward GFLOPs per image')
  ax.set_ylabel(metric + (' (%)' if metric in PERCENT_METRICS else ''))
  ax.set_title(f"{runs[0]['dataset']}, {runs[0]['model']}: mean ± std over "
               'seeds')
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  files = []
  for ext in ('png', 'svg'):
    data = io.BytesIO()  # Written whole: the path may be gs://.
    fig.savefig(data, format=ext, dpi=100)
    target = paths.resolve(f'{path}.{ext}')
    target.write_bytes(data.getvalue())
    files.append(str(target))
  plt.close(fig)
  return files


def table(runs: list[dict[str, Any]]) -> str:
  """The markdown comparison table of `runs`, one row per setting."""
  groups = settings(runs)
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
  for group in groups:
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


def report(run_dirs: list[str], figure_path: str | None = None
           ) -> tuple[str, list[str]]:
  """(table and pairing of the readable runs, error lines of the others);
  with `figure_path`, also draws the figure there."""
  runs, errors = [], []
  for d in run_dirs:
    try:
      runs.append(load_results(d))
    except ResultsError as e:
      errors.append(f'error: {e} (skipped)')
  if not runs:
    return '', errors
  text = table(runs)
  if paired := pairs_table(runs):
    text += '\n\n' + paired
  if figure_path:
    files = figure(runs, figure_path)
    text += '\n\nFigure: ' + ', '.join(files)
  return text, errors


def main(argv):
  run_dirs = argv[1:]
  args = flags.FLAGS
  for flag in ('out', 'figure'):  # Before the work, not after.
    cli.require_parent(flag, args[flag].value)
  text, errors = report(run_dirs, args.figure)
  for line in errors:
    print(line, file=sys.stderr)
  if text:
    print(text)
    if args.out:
      paths.write_text_atomic(args.out, text + '\n')
  sys.exit(1 if errors or not text else 0)


if __name__ == '__main__':
  flags.DEFINE_string('out', None, 'Also write the table to this file.')
  flags.DEFINE_string(
      'figure', None, 'Also draw the metric-vs-GFLOPs figure to FIGURE.png '
      'and FIGURE.svg.')
  cli.run(main, __doc__, arguments='one or more run directories')

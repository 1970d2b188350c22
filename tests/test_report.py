"""resizer.report: one row per setting, mean ± std over seeds, bad runs named."""

import json

import pytest

from resizer import report


def write_run(path, resizer='learned', seed=0, top1=0.9, **extra):
  path.mkdir(parents=True)
  results = dict(
      config='configs/demo.py', seed=seed, dataset='fine_gratings',
      task='classification', main_metric='top1_accuracy', model='resnet_demo',
      resizer=resizer, interpolation='bilinear', antialias=False,
      in_size=[128, 128], out_size=[32, 32], trainable_params=1234,
      gflops_per_image=0.5, eval={'top1_accuracy': top1, 'loss': 0.1,
                                  'num_examples': 1024},
      steps=300, global_batch_size=64, dtype='float32', wall_time_sec=60.0)
  results.update(extra)
  (path / 'results.json').write_text(json.dumps(results))
  return str(path)


def test_seeds_of_one_setting_share_a_row_with_mean_and_std(tmp_path):
  dirs = [write_run(tmp_path / f'l{s}', seed=s, top1=t)
          for s, t in enumerate([0.90, 0.92, 0.94])]
  dirs.append(write_run(tmp_path / 'b0', resizer='fixed', top1=0.5))
  text, errors = report.report(dirs)
  assert not errors
  rows = [l for l in text.split('\n\n')[0].splitlines()[2:]]
  assert len(rows) == 2
  learned = next(r for r in rows if '| learned |' in r)
  assert '92.0 ± 2.0' in learned and learned.rstrip().endswith('| 3 |')
  fixed = next(r for r in rows if '| bilinear |' in r)
  assert '| 50.0 |' in fixed and '128x128 → 32x32' in fixed


def test_corrupt_or_missing_results_are_named_and_others_still_reported(tmp_path):
  good = write_run(tmp_path / 'good')
  corrupt = tmp_path / 'corrupt'
  corrupt.mkdir()
  (corrupt / 'results.json').write_text('{"seed": 0, ')
  missing = tmp_path / 'missing'
  missing.mkdir()
  incomplete = write_run(tmp_path / 'incomplete')
  data = json.loads((tmp_path / 'incomplete' / 'results.json').read_text())
  del data['eval']
  (tmp_path / 'incomplete' / 'results.json').write_text(json.dumps(data))
  text, errors = report.report([good, str(corrupt), str(missing), incomplete])
  assert len(text.splitlines()) == 3  # Header, rule, the good run.
  assert len(errors) == 3
  assert any('corrupt/results.json: not valid JSON' in e for e in errors)
  assert any('missing/results.json: missing' in e for e in errors)
  assert any("incomplete/results.json: missing keys ['eval']" in e for e in errors)


def test_each_learned_setting_is_paired_with_the_cheapest_fixed_one_that_costs_as_much(
    tmp_path):
  """The learned resizer at 0.111 GFLOPs/img against a ladder of pipeline
  resizes: its baseline is the 0.127 rung (least GFLOPs >= 0.111), not the
  cheaper, weaker ones; gap and spread by hand."""
  dirs = [write_run(tmp_path / f'learned{s}', seed=s, top1=t,
                    gflops_per_image=0.111)
          for s, t in enumerate([0.90, 0.92, 0.94])]
  for size, gflops, tops in [(48, 0.03, [0.5]), (112, 0.097, [0.95, 0.97]),
                             (128, 0.127, [0.80, 0.84, 0.82])]:
    dirs += [write_run(tmp_path / f'none{size}_{s}', resizer='none', seed=s,
                       top1=t, gflops_per_image=gflops, in_size=[size, size],
                       out_size=[size, size]) for s, t in enumerate(tops)]
  [row] = report.pairs([report.load_results(d) for d in dirs])
  assert row['fixed'][0]['in_size'] == [128, 128]
  assert row['gap'] == pytest.approx(92.0 - 82.0)
  assert row['spread'] == pytest.approx(2.0)
  text, errors = report.report(dirs, str(tmp_path / 'figure'))
  assert not errors
  line = next(l for l in text.splitlines() if l.startswith('| learned 128'))
  assert ('| bilinear (pipeline) 128x128→128x128 | 0.127 | 82.00 ± 2.00 (n=3) '
          '| +10.00 | 2.00 |') in line
  png = (tmp_path / 'figure.png').read_bytes()
  assert png.startswith(b'\x89PNG') and len(png) > 5000
  assert b'<svg' in (tmp_path / 'figure.svg').read_bytes()[:1000]


def test_a_learned_run_costlier_than_every_fixed_one_says_so(tmp_path):
  dirs = [write_run(tmp_path / 'learned', gflops_per_image=1.0),
          write_run(tmp_path / 'none', resizer='none', gflops_per_image=0.5)]
  [row] = report.pairs([report.load_results(d) for d in dirs])
  assert row['fixed'] is None
  text, _ = report.report(dirs)
  assert 'none costs as much' in text

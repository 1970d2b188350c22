"""resizer.report: one row per setting, mean ± std over seeds, bad runs named."""

import json

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
  rows = [l for l in text.splitlines()[2:]]
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

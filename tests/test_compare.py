"""resizer.compare: the equal-compute grid, run one after another, resumable,
then the report with its pairing and figure."""

import json
import subprocess
import sys

import pytest

from resizer import compare

TINY = ['input.dataset=fine_gratings/tiny', 'model.name=resnet_tiny',
        'input.batch_size=16', 'input.eval_batch_size=16', 'total_steps=1',
        'image_summary_every_steps=0']


@pytest.mark.slow
def test_the_ladder_climbs_from_the_target_size_past_the_learned_cost():
  runs = compare.grid('configs/demo.py', ['learned'], ['bilinear', 'area+aa'],
                      1.0, TINY)
  learned, *ladder = runs
  assert learned.name == 'learned' and learned.overrides == ()
  for spec in ('bilinear', 'area_aa'):
    rungs = [r for r in ladder if r.name.startswith(f'none_{spec}_')]
    sizes = [int(r.name.rsplit('_', 1)[1].split('x')[0]) for r in rungs]
    # From the demo's target (32) up, about sqrt(2) apart, at most its
    # input size (128).
    assert sizes[0] == 32 and sizes == sorted(set(sizes)) and sizes[-1] <= 128
    assert all(1.25 <= b / a <= 1.6 for a, b in zip(sizes, sizes[1:]))
    gflops = [r.gflops for r in rungs]
    assert gflops == sorted(gflops)
    # Every rung but the last is cheaper than the learned model; the last
    # costs at least as much, or is the input size.
    assert all(g < learned.gflops for g in gflops[:-1])
    assert gflops[-1] >= learned.gflops or sizes[-1] == 128
    assert dict(rungs[0].overrides)['input.antialias'] == str(
        spec.endswith('aa')).lower()


@pytest.mark.slow
def test_print_only_prints_ordinary_resizer_main_commands(tmp_path):
  out = subprocess.run(
      [sys.executable, '-m', 'resizer.compare', '--config=configs/demo.py',
       f'--workdir={tmp_path}', '--seeds=2', '--learned=learned',
       '--fixed=bilinear', '--flops_margin=0', '--print_only',
       *[f'--set={s}' for s in TINY]],
      capture_output=True, text=True, check=True).stdout.splitlines()
  assert len(out) == 4  # (learned, one rung) x 2 seeds.
  assert out[0].startswith(
      'python -m resizer.main --config=configs/demo.py:resizer=learned '
      f'--workdir={tmp_path}/learned_seed0 --config.seed=0')
  assert '--config.resizer.in_size=32x32 --config.resizer.out_size=32x32' in (
      out[3]) and out[3].endswith('--config.image_summary_every_steps=0')
  assert not list(tmp_path.iterdir())  # Nothing ran.


@pytest.mark.slow
def test_the_grid_runs_skips_what_is_finished_and_reports(tmp_path, data_dir):
  command = [sys.executable, '-m', 'resizer.compare',
             '--config=configs/demo.py', f'--workdir={tmp_path}', '--seeds=1',
             '--learned=learned', '--fixed=bilinear', '--flops_margin=0',
             f'--set=input.data_dir={data_dir}',
             *[f'--set={s}' for s in TINY]]
  first = subprocess.run(command, capture_output=True, text=True)
  assert first.returncode == 0, first.stderr[-3000:]
  assert '[1/2] learned_seed0 (' in first.stdout
  for name in ('learned_seed0', 'none_bilinear_32x32_seed0'):
    assert json.loads((tmp_path / name / 'results.json').read_text())[
        'steps'] == 1
  report = (tmp_path / 'report.md').read_text()
  assert '| learned 128x128→32x32 |' in report  # The pairing.
  assert (tmp_path / 'compare.png').exists() and (tmp_path / 'compare.svg').exists()
  grid = json.loads((tmp_path / 'grid.json').read_text())
  assert [g['name'] for g in grid] == ['learned', 'none_bilinear_32x32']
  # Launched again, it trains nothing and reports again.
  (tmp_path / 'report.md').unlink()
  again = subprocess.run(command, capture_output=True, text=True)
  assert again.returncode == 0, again.stderr[-3000:]
  assert '[1/2] learned_seed0: finished, skipped' in again.stdout
  assert '[2/2] none_bilinear_32x32_seed0: finished, skipped' in again.stdout
  assert (tmp_path / 'report.md').read_text() == report
  # A run whose record is damaged is not finished: the next launch trains
  # it again, as the first launch trained the missing ones.
  (tmp_path / 'learned_seed0' / 'results.json').write_text('{')
  assert not compare.finished(tmp_path / 'learned_seed0')
  assert compare.finished(tmp_path / 'none_bilinear_32x32_seed0')

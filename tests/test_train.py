"""train_and_evaluate end to end on 8 forced CPU devices under mock TFDS data."""

import glob
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from resizer import config_checks, train
from tests.tiny_runs import NUM_EXAMPLES, copy_run, final_params, run
from tests.tiny_runs import tiny_config


@pytest.mark.slow
def test_short_run_writes_metrics_checkpoints_and_tensorboard(
    trained_tiny_run):
  workdir, results = trained_tiny_run
  ev = results['eval']
  assert ev['num_examples'] == NUM_EXAMPLES
  assert np.isfinite(ev['loss']) and 0 <= ev['top1_accuracy'] <= ev['top5_accuracy'] <= 1
  assert results['steps'] == 4 and results['num_devices'] == 8
  assert results['resizer_params'] == 12_035
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']
  assert glob.glob(str(workdir / 'events.out.tfevents.*'))
  assert json.loads((workdir / 'results.json').read_text())['eval'] == ev


@pytest.mark.slow
def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path):
  """k steps, stop, rerun to n: bitwise the same parameters, BN statistics
  and EMA as n steps in one go (float32 on CPU, deterministic input). With
  EMA, as it is the most state to restore; a resume without it is specified
  the same way with a killed process in tests/test_preemption.py."""
  straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
  run(tiny_config(ema_decay=0.5), straight)
  run(tiny_config(total_steps=2, ema_decay=0.5), resumed)
  # The step schedule does not depend on total_steps: lengthening the run is
  # the same training, cut short the first time.
  results = run(tiny_config(ema_decay=0.5), resumed, allow_config_change=True)
  assert results['steps'] == 4 and 'eval_ema' in results
  a, b = final_params(straight), final_params(resumed)
  keys = ('params', 'batch_stats', 'opt_state', 'ema_params')
  assert set(a) == {'step', *keys}
  for key in keys:
    for x, y in zip(*(jax_leaves(t[key]) for t in (a, b))):
      np.testing.assert_array_equal(x, y)


def jax_leaves(tree):
  return jax.tree.leaves(tree)


@pytest.mark.slow
def test_eval_counts_every_example_once(trained_tiny_run, tmp_path):
  """20 examples in batches of 8 (4 padded) and in one batch of 40 (20
  padded) agree."""
  source, padded = trained_tiny_run
  whole = run(tiny_config(**{'eval_only': True, 'input.eval_batch_size': 40}),
              copy_run(source, tmp_path / 'run'))
  assert padded['eval']['num_examples'] == whole['eval']['num_examples'] == 20
  for k in ('loss', 'top1_accuracy', 'top5_accuracy'):
    assert padded['eval'][k] == pytest.approx(whole['eval'][k], rel=1e-5)


@pytest.mark.slow
def test_accumulation_reaches_the_trainers_step(trained_tiny_run, tmp_path):
  """config.optim.accumulate_steps changes what BatchNorm sees, so the
  trained weights differ from the same run without it (the shared run)."""
  source, _ = trained_tiny_run
  run(tiny_config(**{'optim.accumulate_steps': 2}), tmp_path / 'k2')
  recorded = json.loads((tmp_path / 'k2' / 'config.json').read_text())
  assert recorded['optim']['accumulate_steps'] == 2
  a, b = (final_params(p)['params'] for p in (tmp_path / 'k2', source))
  assert max(np.abs(x - y).max() for x, y in zip(jax.tree.leaves(a),
                                                 jax.tree.leaves(b))) > 1e-6


@pytest.mark.slow
def test_a_warm_started_run_averages_from_the_warm_weights(trained_tiny_run,
                                                          tmp_path):
  source, _ = trained_tiny_run
  results = run(tiny_config(**{'total_steps': 1, 'ema_decay': 0.5,
                               'init_from.workdir': str(source)}),
                tmp_path / 'run')
  assert results['steps'] == 1 and 'eval_ema' in results
  warm = final_params(source)['params']
  state = final_params(tmp_path / 'run')
  for w, p, e in zip(*(jax.tree.leaves(t) for t in (
      warm, state['params'], state['ema_params']))):
    np.testing.assert_allclose(e, 0.5 * w + 0.5 * p, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_eval_only_evaluates_the_latest_checkpoint(trained_tiny_run, tmp_path):
  source, trained = trained_tiny_run
  again = run(tiny_config(eval_only=True), copy_run(source, tmp_path / 'run'))
  assert again['steps'] == 4
  assert again['eval']['loss'] == pytest.approx(trained['eval']['loss'], rel=1e-6)


@pytest.mark.slow
def test_eval_only_without_checkpoint_fails(tmp_path):
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    run(tiny_config(eval_only=True), tmp_path)


@pytest.mark.slow
def test_non_finite_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
  with pytest.raises(FloatingPointError, match=r'at step \d+') as error:
    run(tiny_config(**{'optim.learning_rate': 1e30, 'total_steps': 8,
                       'optim.weight_decay': 0.0}), tmp_path)
  if os.listdir(tmp_path / 'checkpoints'):
    # Whatever was saved came before the first bad loss, and is named.
    mgr = ocp.CheckpointManager(tmp_path / 'checkpoints')
    assert f'checkpoint is step {mgr.latest_step()}' in str(error.value)
    params = final_params(tmp_path)['params']
    assert all(np.all(np.isfinite(x)) for x in jax_leaves(params))


@pytest.mark.parametrize('key, value, match', [
    ('input.batch_size', 12, r'config.input.batch_size=12.*multiple of the device count \(8\)'),
    ('input.dataset', 'no_such_dataset', "config.input.dataset='no_such_dataset'"),
    ('resizer.kind', 'none', 'must equal config.resizer.out_size'),
    ('optim.freeze', 'head', "config.optim.freeze='head'"),
    ('optim.schedule', 'linear', "config.optim.schedule='linear'"),
    ('model.num_classes', 10, r'config.model.num_classes=10.*1000, the class count'),
    ('eval_every_steps', 0, 'config.eval_every_steps=0'),
    ('input.make_manual_dir', 'ava_download',
     "config.input.make_manual_dir='ava_download'.*iqa_demo"),
])
def test_bad_config_fails_before_compiling_naming_the_key(tmp_path, key, value, match):
  with pytest.raises((config_checks.ConfigError, ValueError, RuntimeError),
                     match=match):
    run(tiny_config(**{key: value}), tmp_path)
  assert not os.path.exists(tmp_path / 'checkpoints')
  assert not os.path.exists(tmp_path / 'config.json')  # A run's record stays.


def test_periodic_actions_fall_on_multiples_of_their_period_and_the_last_step():
  due = lambda every: [s for s in range(1, 11) if train.itstime(s, every, 10)]
  assert due(4) == [4, 8, 10]
  assert due(5) == [5, 10]
  assert due(1) == list(range(1, 11))
  assert due(0) == [10]  # 0: no period; the last step still gets its action.

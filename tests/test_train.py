"""train_and_evaluate end to end on 8 forced CPU devices under mock TFDS data."""

import glob
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from configs import common
from resizer import config_checks, train

NUM_EXAMPLES = 20  # Not a multiple of the eval batch: padding must be masked.


def tiny_config(**overrides):
  c = common.imagenet_config('resizer=learned,res=48,out=24', 'resnet_tiny')
  c.model.dtype = 'float32'
  c.input.update(batch_size=8, eval_batch_size=8, shuffle_buffer=16)
  c.optim.update(learning_rate=0.01, weight_decay=1e-4)
  c.update(total_steps=4, log_every_steps=2, eval_every_steps=4,
           checkpoint_every_steps=2, image_summary_every_steps=4,
           # mock_data swaps the file system out while it builds a dataset;
           # a checkpoint written in the background then lands in the mock.
           async_checkpoints=False)
  for key, value in overrides.items():
    block, _, name = key.rpartition('.')
    (c[block] if block else c)[name] = value
  return c


def run(config, workdir, **kwargs):
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
    return train.train_and_evaluate(config, str(workdir), **kwargs)


def final_params(workdir):
  mgr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  return mgr.restore(mgr.latest_step(), args=ocp.args.StandardRestore())


@pytest.mark.slow
def test_short_run_writes_metrics_checkpoints_and_tensorboard(tmp_path):
  results = run(tiny_config(), tmp_path)
  ev = results['eval']
  assert ev['num_examples'] == NUM_EXAMPLES
  assert np.isfinite(ev['loss']) and 0 <= ev['top1_accuracy'] <= ev['top5_accuracy'] <= 1
  assert results['steps'] == 4 and results['num_devices'] == 8
  assert results['resizer_params'] == 12_035
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '4']
  assert glob.glob(str(tmp_path / 'events.out.tfevents.*'))
  assert json.loads((tmp_path / 'results.json').read_text())['eval'] == ev


@pytest.mark.slow
@pytest.mark.parametrize('ema_decay', [0.0, 0.5])
def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path,
                                                           ema_decay):
  """k steps, stop, rerun to n: bitwise the same parameters, BN statistics
  (and EMA) as n steps in one go (float32 on CPU, deterministic input)."""
  straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
  run(tiny_config(total_steps=6, eval_every_steps=6, ema_decay=ema_decay),
      straight)
  run(tiny_config(total_steps=3, eval_every_steps=3,
                  checkpoint_every_steps=3, ema_decay=ema_decay), resumed)
  # The step schedule does not depend on total_steps: lengthening the run is
  # the same training, cut short the first time.
  results = run(tiny_config(total_steps=6, eval_every_steps=6,
                            ema_decay=ema_decay), resumed,
                allow_config_change=True)
  assert results['steps'] == 6
  assert ('eval_ema' in results) == (ema_decay > 0)
  a, b = final_params(straight), final_params(resumed)
  keys = ('params', 'batch_stats', 'opt_state') + (
      ('ema_params',) if ema_decay else ())
  assert set(a) == {'step', *keys}
  for key in keys:
    for x, y in zip(*(jax_leaves(t[key]) for t in (a, b))):
      np.testing.assert_array_equal(x, y)


def jax_leaves(tree):
  return jax.tree.leaves(tree)


@pytest.mark.slow
def test_eval_counts_every_example_once(tmp_path):
  """20 examples in batches of 8 (4 padded) and in one batch of 20 agree."""
  padded = run(tiny_config(total_steps=1, eval_every_steps=1), tmp_path / 'a')
  whole = run(tiny_config(**{'total_steps': 1, 'eval_every_steps': 1,
                             'input.eval_batch_size': 40}), tmp_path / 'b')
  assert padded['eval']['num_examples'] == whole['eval']['num_examples'] == 20
  for k in ('loss', 'top1_accuracy', 'top5_accuracy'):
    assert padded['eval'][k] == pytest.approx(whole['eval'][k], rel=1e-5)


@pytest.mark.slow
def test_accumulation_reaches_the_trainers_step(tmp_path):
  """config.optim.accumulate_steps changes what BatchNorm sees, so the
  trained weights differ from the same run without it (remat, on, changes
  nothing: tests/test_composite.py)."""
  common_keys = {'total_steps': 2, 'input.batch_size': 16,
                 'model.remat': 'resizer'}
  run(tiny_config(**common_keys, **{'optim.accumulate_steps': 2}),
      tmp_path / 'k2')
  run(tiny_config(**common_keys), tmp_path / 'k1')
  recorded = json.loads((tmp_path / 'k2' / 'config.json').read_text())
  assert recorded['optim']['accumulate_steps'] == 2
  a, b = (final_params(tmp_path / k)['params'] for k in ('k2', 'k1'))
  assert max(np.abs(x - y).max() for x, y in zip(jax.tree.leaves(a),
                                                 jax.tree.leaves(b))) > 1e-6


@pytest.mark.slow
def test_a_warm_started_run_averages_from_the_warm_weights(tmp_path):
  run(tiny_config(total_steps=2), tmp_path / 'source')
  results = run(tiny_config(**{'total_steps': 1, 'ema_decay': 0.5,
                               'init_from.workdir': str(tmp_path / 'source')}),
                tmp_path / 'run')
  assert results['steps'] == 1 and 'eval_ema' in results
  warm = final_params(tmp_path / 'source')['params']
  state = final_params(tmp_path / 'run')
  for w, p, e in zip(*(jax.tree.leaves(t) for t in (
      warm, state['params'], state['ema_params']))):
    np.testing.assert_allclose(e, 0.5 * w + 0.5 * p, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_eval_only_evaluates_the_latest_checkpoint(tmp_path):
  trained = run(tiny_config(), tmp_path)
  again = run(tiny_config(eval_only=True), tmp_path)
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

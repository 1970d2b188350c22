"""Image quality assessment: metrics, the offline demo data, and training."""

import os

import numpy as np
import pytest
import scipy.stats
import tensorflow_datasets as tfds

from configs import ava_efficientnet, demo_iqa
from resizer import metrics, train
from resizer.datasets import ava, iqa_demo


def test_srcc_plcc_over_padded_batches_equal_scipy_on_the_unpadded_set():
  rng = np.random.default_rng(0)
  n, padded = 37, 48
  true_mean = rng.uniform(2, 8, n)
  pred_mean = true_mean + rng.normal(0, 1, n)
  true_std, pred_std = rng.uniform(1, 2, n), rng.uniform(1, 2, n)
  emd = rng.uniform(0, 0.3, n)

  def pad(x):  # Padding holds garbage that the mask must hide.
    return np.concatenate([x, np.full(padded - n, 1e6)])

  outputs = dict(pred_mean=pad(pred_mean), true_mean=pad(true_mean),
                 pred_std=pad(pred_std), true_std=pad(true_std), emd=pad(emd),
                 mask=np.concatenate([np.ones(n), np.zeros(padded - n)]))
  m = metrics.iqa_metrics(outputs)
  assert m['srcc'] == pytest.approx(scipy.stats.spearmanr(pred_mean, true_mean)[0])
  assert m['plcc'] == pytest.approx(scipy.stats.pearsonr(pred_mean, true_mean)[0])
  assert m['std_srcc'] == pytest.approx(scipy.stats.spearmanr(pred_std, true_std)[0])
  assert m['emd'] == pytest.approx(emd.mean())
  assert m['binary_accuracy'] == pytest.approx(
      np.mean((pred_mean > 5) == (true_mean > 5)))
  assert m['num_examples'] == n


def test_score_moments_of_a_point_mass_and_a_uniform():
  p = np.zeros((2, 10), np.float32)
  p[0, 6] = 1.0
  p[1] = 0.1
  mean, std = metrics.score_moments(p)
  np.testing.assert_allclose(mean, [7.0, 5.5], rtol=1e-6)
  np.testing.assert_allclose(std, [0.0, np.sqrt(8.25)], rtol=1e-5)


@pytest.mark.slow
def test_demo_generator_writes_valid_ava_rows_whose_scores_fall_with_degradation(tmp_path):
  iqa_demo.write_ava_dir(str(tmp_path), num_images=40, seed=3)
  rows = [ava.parse_row(l)[0] for l in (tmp_path / 'AVA.txt').read_text().splitlines()]
  assert len(rows) == 40 and all(r is not None for r in rows)
  assert all(ava.check_image(str(tmp_path / 'images' / f"{r['image_id']}.jpg"))[1]
             is None for r in rows)
  # Regenerating gives the same bytes.
  iqa_demo.write_ava_dir(str(tmp_path / 'again'), num_images=3, seed=3)
  for r in rows[:3]:
    name = f"images/{r['image_id']}.jpg"
    assert (tmp_path / name).read_bytes() == (tmp_path / 'again' / name).read_bytes()
  # The rating model: less degradation, higher scores.
  low = iqa_demo.rating_counts(dict(blur=0, noise=0, downscale=0, jpeg=0), 0.0,
                               np.random.default_rng(0))
  high = iqa_demo.rating_counts(dict(blur=1, noise=1, downscale=1, jpeg=1), 0.0,
                                np.random.default_rng(0))
  scores = np.arange(1, 11)
  assert (low * scores).sum() / low.sum() > (high * scores).sum() / high.sum() + 4


@pytest.mark.slow
def test_demo_iqa_prepares_through_the_ava_builder_and_trains(tmp_path):
  manual = tmp_path / 'manual'
  iqa_demo.write_ava_dir(str(manual), num_images=40)
  config = demo_iqa.get_config()
  config.input.update(manual_dir=str(manual), data_dir=str(tmp_path / 'tfds'),
                      batch_size=16, eval_batch_size=16)
  config.model.name = 'resnet_tiny'
  config.update(total_steps=2, eval_every_steps=2, checkpoint_every_steps=2,
                image_summary_every_steps=2)
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['main_metric'] == 'srcc' and results['eval']['num_examples'] == 8
  for key in ('srcc', 'plcc', 'emd', 'binary_accuracy', 'std_srcc'):
    assert np.isfinite(results['eval'][key]) or key.endswith('srcc')
  assert os.path.exists(tmp_path / 'tfds' / 'ava' / 'random_split' / '1.0.0' /
                        ava.REPORT_NAME)


@pytest.mark.slow
def test_ava_config_runs_one_step_under_mock_data(tmp_path):
  """The AVA configs differ only in their backbone, swapped here for a tiny
  sibling: one run covers them. EfficientNet's is the one no other training
  run uses (resnet_tiny: the demo above; densenet_tiny: test_warm_start),
  and it has dropout and stochastic depth."""
  config = ava_efficientnet.get_config('res=48,out=24')
  config.model.update(name='efficientnet_tiny', dtype='float32')
  config.input.update(batch_size=8, eval_batch_size=8, shuffle_buffer=8)
  config.update(total_steps=1, async_checkpoints=False)
  with tfds.testing.mock_data(num_examples=16):
    results = train.train_and_evaluate(config, str(tmp_path))
  assert results['steps'] == 1 and results['eval']['num_examples'] == 16
  assert np.isfinite(results['eval']['emd'])

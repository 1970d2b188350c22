"""The input pipeline: batches are a function of (seed, step), a resumed
stream continues where the run stopped, and evaluation sees every example
once."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import resizer.datasets  # noqa: F401  (registers fine_gratings)
from configs import demo
from resizer import input_pipeline

BATCH = 16  # fine_gratings/tiny: 64 training examples, 4 batches per epoch.
SIZE = (32, 32)


def input_config(data_dir, **overrides):
  cfg = demo.get_config().input
  cfg.update(dataset='fine_gratings/tiny', data_dir=str(data_dir),
             prepare=False, **overrides)
  return cfg


def train_stream(data_dir, start_step=0, seed=0, steps=3, **overrides):
  cfg = input_config(data_dir, **overrides)
  builder = input_pipeline.get_builder(cfg)
  per_epoch = input_pipeline.steps_per_epoch(builder, cfg, BATCH)
  stream = input_pipeline.train_batches(
      builder, cfg, size=SIZE, start_step=start_step,
      steps_per_epoch=per_epoch, local_batch_size=BATCH, seed=seed)
  return [next(stream) for _ in range(steps)]


def assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['image'], y['image'])
    np.testing.assert_array_equal(x['label'], y['label'])


@pytest.mark.parametrize('cache_train', [True, False])
def test_training_batches_are_a_function_of_seed_and_step(data_dir,
                                                          cache_train):
  first = train_stream(data_dir, cache_train=cache_train)
  assert first[0]['image'].shape == (BATCH, *SIZE, 3)
  assert first[0]['image'].dtype == np.uint8
  assert_same_batches(first, train_stream(data_dir, cache_train=cache_train))
  other_seed = train_stream(data_dir, seed=1, cache_train=cache_train)
  assert not np.array_equal(first[0]['image'], other_seed[0]['image'])


@pytest.mark.parametrize('start_step, cache_train', [
    (1, True), (4, True), (5, True), (5, False)])
def test_a_resumed_stream_continues_with_the_batches_of_an_unbroken_one(
    data_dir, start_step, cache_train):
  """Step k's batch is the same whether the stream started at 0 or resumed
  at k: within an epoch (1), at an epoch boundary (4) and past it (5), from
  cached records and from files."""
  unbroken = train_stream(data_dir, steps=start_step + 3,
                          cache_train=cache_train)
  resumed = train_stream(data_dir, start_step=start_step, steps=3,
                         cache_train=cache_train)
  assert_same_batches(unbroken[start_step:], resumed)


def test_each_epoch_visits_every_training_example_once(data_dir):
  """One epoch of labels is a permutation of the split's labels (a shuffle
  that neither drops nor repeats), and the next epoch is ordered anew."""
  epochs = train_stream(data_dir, steps=8)
  want = sorted(int(ex['label']) for ex in tfds.as_numpy(
      tfds.builder('fine_gratings/tiny', data_dir=str(data_dir))
      .as_dataset(split='train')))
  for epoch in (epochs[:4], epochs[4:]):
    labels = np.concatenate([b['label'] for b in epoch])
    assert sorted(labels.tolist()) == want
  assert not np.array_equal(epochs[0]['image'], epochs[4]['image'])


def test_evaluation_sees_every_example_once_then_masked_padding(data_dir):
  cfg = input_config(data_dir)
  builder = input_pipeline.get_builder(cfg)
  num = input_pipeline.num_eval_batches(builder, cfg, 10)
  batches = list(input_pipeline.eval_batches(
      builder, cfg, size=SIZE, local_batch_size=10, num_batches=num + 1))
  assert num == 4  # 32 examples in batches of 10.
  assert len(batches) == 5 and all(len(b['mask']) == 10 for b in batches)
  masks = np.concatenate([b['mask'] for b in batches])
  np.testing.assert_array_equal(masks, [1] * 32 + [0] * 18)
  padded = np.concatenate([b['image'] for b in batches])[32:]
  assert not padded.any()


def test_pad_batch_appends_zero_rows_and_leaves_full_batches_alone():
  batch = {'image': np.ones((3, 2, 2, 3), np.uint8),
           'mask': np.ones(3, np.float32)}
  padded = input_pipeline.pad_batch(batch, 5)
  np.testing.assert_array_equal(padded['mask'], [1, 1, 1, 0, 0])
  assert padded['image'].shape == (5, 2, 2, 3) and not padded['image'][3:].any()
  assert input_pipeline.pad_batch(batch, 3) is batch

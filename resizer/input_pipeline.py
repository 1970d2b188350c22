"""tf.data input: TFDS records → decoded, cropped, flipped uint8 batches.

Training crops at the *resizer's input* resolution (the learned resizer sees
the high-resolution image; the backbone sees its output). Each process reads
its own share of a split (`tfds.split_for_jax_process`).

Determinism and resumption: epoch e of the training stream is the process's
share of the split, files and records shuffled with seeds derived from
(seed, e), so the stream is a pure function of the step. A run resumed at
step s rebuilds epoch s // steps_per_epoch and skips the records of the
batches already consumed, before decoding them.
"""

import dataclasses
import os
from typing import Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from resizer import datasets, hosts, paths  # (datasets registers them.)

Batch = dict[str, np.ndarray]


class DatasetNotReadyError(RuntimeError):
  """The TFDS dataset named in the config cannot be read yet."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the config checks need to know of a dataset's labels."""
  num_classes: int | None      # of a ClassLabel label
  label_shape: tuple[int, ...]


def get_builder(cfg: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The prepared TFDS builder of `cfg.dataset`, or a message saying how to
  prepare it. With `cfg.prepare` it is generated on first use."""
  data_dir = os.fspath(paths.resolve(cfg.data_dir)) if cfg.data_dir else None
  try:
    builder = tfds.builder(cfg.dataset, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DatasetNotReadyError(
        f'config.input.dataset={cfg.dataset!r} is not a TFDS dataset '
        f'({str(e).splitlines()[0]})') from None
  if cfg.prepare:
    _prepare_once(builder, cfg)
    # What process 0 wrote: a builder made before it existed has no splits.
    builder = tfds.builder(cfg.dataset, data_dir=data_dir)
  if not _readable(builder, cfg.train_split):
    manual = ''
    if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
      manual = (f' It needs a manual download: put the files in '
                f'{tf.io.gfile.join(builder._data_dir_root, "downloads", "manual")}'
                f' first. {builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}')
    raise DatasetNotReadyError(
        f'TFDS dataset {cfg.dataset!r} is not prepared in {builder.data_dir}. '
        f'Prepare it with `tfds build {cfg.dataset} --data_dir='
        f'{builder._data_dir_root}` (or set TFDS_DATA_DIR / '
        f'config.input.data_dir to where it is).{manual}')
  return builder


def _prepare_once(builder, cfg) -> None:
  """Prepares the dataset on process 0 while the other processes wait (at
  most hosts.PREPARE_TIMEOUT_S; if process 0 fails, they stop with it)."""
  if jax.process_index() == 0 and not builder.is_prepared():
    manual_dir = cfg.get('manual_dir')
    if manual_dir:
      manual_dir = paths.resolve(manual_dir)
      maker = cfg.get('make_manual_dir')
      if maker:
        write, written = datasets.MANUAL_DIR_MAKERS[maker]
        if not (manual_dir / written).exists():
          logging.info('Writing %s into %s.', maker, manual_dir)
          write(manual_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  if jax.process_count() > 1:
    hosts.wait_for_process_0(f'prepared {builder.name}')


def _readable(builder, split: str) -> bool:
  """Whether records can be read (true of prepared data and of
  `tfds.testing.mock_data`, whose builders are never 'prepared')."""
  if builder.is_prepared():
    return True
  try:
    builder.as_dataset(split=split)
  except (AssertionError, FileNotFoundError, ValueError):
    return False
  return True


def num_examples(builder, split: str) -> int:
  """Examples in `split` (which may be a slice, e.g. 'train[0:50%]'): from the
  metadata, or counted when there is none (mock data in tests)."""
  try:
    return builder.info.splits[split].num_examples
  except (KeyError, ValueError):
    ds = builder.as_dataset(split=split)
    return int(ds.reduce(np.int64(0), lambda n, _: n + 1))


def dataset_info(builder: tfds.core.DatasetBuilder,
                 cfg: ml_collections.ConfigDict) -> DatasetInfo:
  """The label feature's class count and shape; names the keys if absent."""
  features = builder.info.features
  if cfg.label_key not in features or cfg.image_key not in features:
    raise ValueError(
        f'config.input.label_key={cfg.label_key!r} / image_key='
        f'{cfg.image_key!r}: {cfg.dataset} has features {sorted(features)}.')
  label = features[cfg.label_key]
  return DatasetInfo(num_classes=getattr(label, 'num_classes', None),
                     label_shape=tuple(label.shape))


def _decode_and_random_crop(data: tf.Tensor, cfg, seed: tf.Tensor) -> tf.Tensor:
  """A random crop of area and aspect ratio in the configured ranges, decoded
  (JPEGs only inside the crop window)."""
  is_jpeg = tf.io.is_jpeg(data)
  image_shape = _image_shape(data, is_jpeg)
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=seed, area_range=cfg.crop_area_range,
      aspect_ratio_range=cfg.aspect_ratio_range, max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  window = tf.stack([begin[0], begin[1], size[0], size[1]])
  return _decode_window(data, is_jpeg, window)


def _image_shape(data: tf.Tensor, is_jpeg: tf.Tensor) -> tf.Tensor:
  """(height, width, channels) of an encoded image; JPEGs from the header."""
  return tf.cond(
      is_jpeg, lambda: tf.image.extract_jpeg_shape(data, output_type=tf.int32),
      lambda: tf.shape(tf.io.decode_image(data, channels=3,
                                          expand_animations=False)))


def _decode_window(data, is_jpeg, window) -> tf.Tensor:
  """Decodes only the (top, left, height, width) window; other formats than
  JPEG are decoded whole, then cropped."""
  def jpeg():
    return tf.io.decode_and_crop_jpeg(data, window, channels=3)
  def other():
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    return image[window[0]:window[0] + window[2],
                 window[1]:window[1] + window[3]]
  return tf.cond(is_jpeg, jpeg, other)


def _decode_and_center_crop(data: tf.Tensor, cfg, size) -> tf.Tensor:
  """The central `eval_crop_fraction` of the shorter side with the aspect
  ratio of `size`, decoded."""
  is_jpeg = tf.io.is_jpeg(data)
  shape = _image_shape(data, is_jpeg)
  h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  out_h, out_w = size
  scale = cfg.eval_crop_fraction * tf.minimum(h / out_h, w / out_w)
  crop_h = tf.cast(tf.round(scale * out_h), tf.int32)
  crop_w = tf.cast(tf.round(scale * out_w), tf.int32)
  top = (shape[0] - crop_h) // 2
  left = (shape[1] - crop_w) // 2
  return _decode_window(data, is_jpeg, tf.stack([top, left, crop_h, crop_w]))


def eval_image(data: tf.Tensor, cfg: ml_collections.ConfigDict, size
               ) -> tf.Tensor:
  """An encoded image as evaluation sees it: center crop, resized to `size`."""
  return _resize(_decode_and_center_crop(data, cfg, size), cfg, size)


def _resize(image: tf.Tensor, cfg, size) -> tf.Tensor:
  """Resizes to `size` with the pipeline's own interpolation, back to uint8
  (a quarter of float32's host-to-device traffic)."""
  image = tf.image.resize(image, size, method=cfg.interpolation,
                          antialias=cfg.antialias)
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _read(builder, split: str, cfg, shuffle_seed: int | None) -> tf.data.Dataset:
  # No TFDS auto-cache of small unshuffled splits: each dataset made here is
  # read through once (an evaluation, one image batch, one epoch, or the
  # records `cache_train` caches itself), so the cache would hold the split
  # in memory for nothing, and TensorFlow warns when one is left half read.
  read_config = tfds.ReadConfig(
      shuffle_seed=shuffle_seed, interleave_cycle_length=16,
      add_tfds_id=False, try_autocache=False)
  ds = builder.as_dataset(
      split=tfds.split_for_jax_process(split),
      shuffle_files=shuffle_seed is not None, read_config=read_config,
      decoders={cfg.image_key: tfds.decode.SkipDecoding()})
  return ds


def _with_options(ds: tf.data.Dataset) -> tf.data.Dataset:
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = 0
  return ds.with_options(options)


def train_preprocess(cfg: ml_collections.ConfigDict, size, epoch_seed: int):
  """The per-example training transform (index, example) → {'image', 'label'}:
  random resized crop decoded from the JPEG, resized to `size`, flipped;
  its randomness is a function of (epoch_seed, index) only."""

  def preprocess(index, example):
    example_seed = tf.stack([tf.cast(epoch_seed % (2**31), tf.int64), index])
    image = _decode_and_random_crop(example[cfg.image_key], cfg, example_seed)
    image = _resize(image, cfg, size)
    if cfg.flip:
      image = tf.image.stateless_random_flip_left_right(
          image, seed=example_seed + 1)
    return {'image': image, 'label': example[cfg.label_key]}

  return preprocess


def steps_per_epoch(builder, cfg: ml_collections.ConfigDict,
                    local_batch_size: int) -> int:
  """Full batches per epoch, the same on every process (its smallest share)."""
  smallest = min(num_examples(builder, s)
                 for s in tfds.even_splits(cfg.train_split, n=jax.process_count()))
  if smallest < local_batch_size:
    raise ValueError(
        f'config.input.batch_size: each process needs {local_batch_size} '
        f'training examples per batch but its share of '
        f'{cfg.dataset}:{cfg.train_split} has only {smallest}.')
  return smallest // local_batch_size


def train_epoch(builder, cfg: ml_collections.ConfigDict, *, size, epoch: int,
                local_batch_size: int, steps: int, seed: int,
                skip_batches: int = 0,
                records: tf.data.Dataset | None = None) -> tf.data.Dataset:
  """Batches `skip_batches`..`steps` of one epoch of this process; skipped
  batches are dropped before decoding (for resumption). `records`, if given,
  are this process's encoded examples (cached), shuffled anew each epoch
  instead of being read with a per-epoch file order."""
  epoch_seed = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
  ds = records
  if ds is None:
    ds = _read(builder, cfg.train_split, cfg, shuffle_seed=epoch_seed)
  ds = ds.shuffle(cfg.shuffle_buffer, seed=epoch_seed,
                  reshuffle_each_iteration=False)
  ds = ds.skip(skip_batches * local_batch_size)
  ds = ds.enumerate(start=skip_batches * local_batch_size)

  ds = ds.map(train_preprocess(cfg, size, epoch_seed),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch_size, drop_remainder=True)
  ds = ds.take(steps - skip_batches)  # Keeps processes in lockstep.
  return _with_options(ds.prefetch(cfg.prefetch_batches))


def train_batches(builder, cfg: ml_collections.ConfigDict, *, size,
                  start_step: int,
                  steps_per_epoch: int, local_batch_size: int, seed: int
                  ) -> Iterator[Batch]:
  """The endless training stream of this process from `start_step` on."""
  records = None
  if cfg.cache_train:  # One in-memory cache of encoded records for all epochs.
    records = _read(builder, cfg.train_split, cfg, shuffle_seed=None).cache()
  epoch, skip = divmod(start_step, steps_per_epoch)
  while True:
    ds = train_epoch(builder, cfg, size=size, epoch=epoch,
                     local_batch_size=local_batch_size, steps=steps_per_epoch,
                     seed=seed, skip_batches=skip, records=records)
    yield from tfds.as_numpy(ds)
    epoch, skip = epoch + 1, 0


def eval_batches(builder, cfg: ml_collections.ConfigDict, *, size,
                 local_batch_size: int, num_batches: int) -> Iterator[Batch]:
  """The eval split of this process, every example once, padded to
  `num_batches` full batches; padding has `mask` 0.

  All processes must pass the same `num_batches` (see `num_eval_batches`).
  """
  ds = _read(builder, cfg.eval_split, cfg, shuffle_seed=None)

  def preprocess(example):
    image = eval_image(example[cfg.image_key], cfg, size)
    return {'image': image, 'label': example[cfg.label_key],
            'mask': tf.constant(1.0, tf.float32)}

  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  ds = _with_options(ds.batch(local_batch_size).prefetch(cfg.prefetch_batches))
  produced = 0
  for batch in tfds.as_numpy(ds):
    produced += 1
    yield pad_batch(batch, local_batch_size)
  if produced > num_batches:
    raise ValueError(f'eval split produced {produced} batches, more than the '
                     f'{num_batches} all processes agreed on')
  empty = None
  for _ in range(num_batches - produced):
    if empty is None:
      empty = _empty_batch(builder, cfg, size, local_batch_size)
    yield empty


def num_eval_batches(builder, cfg, local_batch_size: int) -> int:
  """Batches each process yields: enough for the largest process share."""
  largest = max(num_examples(builder, s)
                for s in tfds.even_splits(cfg.eval_split, n=jax.process_count()))
  return -(-largest // local_batch_size)


def pad_batch(batch: Batch, batch_size: int) -> Batch:
  """Pads every array to `batch_size` along axis 0 with zeros (mask 0)."""
  n = len(batch['mask'])
  if n == batch_size:
    return batch
  return {k: np.concatenate([v, np.zeros((batch_size - n, *v.shape[1:]),
                                         v.dtype)])
          for k, v in batch.items()}


def _empty_batch(builder, cfg, size, batch_size: int) -> Batch:
  label = builder.info.features[cfg.label_key]
  h, w = size
  return {'image': np.zeros((batch_size, h, w, 3), np.uint8),
          'label': np.zeros((batch_size, *label.shape), label.np_dtype),
          'mask': np.zeros((batch_size,), np.float32)}

r"""Images/s of the training input transform on realistic JPEGs, per CPU core.

  python benchmarks/input_pipeline.py --size=448 --batch_size=256 \
      --consumer_images_per_sec=2500

Writes ImageNet-like JPEGs (random 300-500 x 300-500 crops of the bundled
photos, quality 90) into memory, then runs `input_pipeline.train_preprocess`
(decode-and-crop, random resized crop, resize to --size, flip) and batching
with tf.data on 1 thread and on all cores. With --consumer_images_per_sec
(e.g. the train step's images/s from benchmarks/train_step.py) it reports
how many cores one host needs to keep that accelerator fed.
"""

import argparse
import io
import json
import os
import time

import numpy as np
import tensorflow as tf
from PIL import Image

from configs import common
from resizer import input_pipeline
from resizer.datasets import iqa_demo


def make_jpegs(num: int, seed: int = 0) -> list[bytes]:
  rng = np.random.default_rng(seed)
  photos = iqa_demo.photos()  # Shorter side 384; upscaled crops are fine here.
  out = []
  for _ in range(num):
    p = photos[rng.integers(len(photos))]
    h, w = rng.integers(300, 501, size=2)
    top = rng.integers(0, max(1, p.shape[0] - 300))
    left = rng.integers(0, max(1, p.shape[1] - 300))
    crop = p[top:top + h, left:left + w]
    im = Image.fromarray((crop * 255).astype(np.uint8)).resize((int(w), int(h)))
    buf = io.BytesIO()
    im.save(buf, 'JPEG', quality=90)
    out.append(buf.getvalue())
  return out


def images_per_sec(jpegs: list[bytes], size: int, batch_size: int,
                   threads: int, seconds: float) -> float:
  cfg = common.base_config().input
  ds = tf.data.Dataset.from_tensor_slices(
      {'image': jpegs, 'label': np.zeros(len(jpegs), np.int64)})
  ds = ds.repeat().enumerate()
  ds = ds.map(input_pipeline.train_preprocess(cfg, (size, size), epoch_seed=0),
              num_parallel_calls=threads)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(2)
  options = tf.data.Options()
  options.threading.private_threadpool_size = threads
  options.threading.max_intra_op_parallelism = 1
  it = iter(ds.with_options(options))
  next(it)  # Warm-up.
  n, t0 = 0, time.perf_counter()
  while time.perf_counter() - t0 < seconds:
    next(it)
    n += batch_size
  return n / (time.perf_counter() - t0)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--size', type=int, default=448)
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--num_images', type=int, default=256)
  parser.add_argument('--seconds', type=float, default=10.0)
  parser.add_argument('--consumer_images_per_sec', type=float, default=None)
  args = parser.parse_args(argv)
  tf.config.set_visible_devices([], 'GPU')
  jpegs = make_jpegs(args.num_images)
  cores = os.cpu_count() or 1
  one = images_per_sec(jpegs, args.size, args.batch_size, 1, args.seconds)
  every = images_per_sec(jpegs, args.size, args.batch_size, cores, args.seconds)
  result = dict(size=args.size, batch_size=args.batch_size,
                mean_jpeg_kib=round(np.mean([len(j) for j in jpegs]) / 1024, 1),
                images_per_sec_one_core=round(one, 1), cores=cores,
                images_per_sec_all_cores=round(every, 1),
                scaling=round(every / one / cores, 3))
  if args.consumer_images_per_sec:
    result['consumer_images_per_sec'] = args.consumer_images_per_sec
    result['cores_needed'] = round(args.consumer_images_per_sec / one, 1)
  print(json.dumps(result))
  return result


if __name__ == '__main__':
  main()

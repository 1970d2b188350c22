"""In-process training runs of a tiny ImageNet config (a learned 48 → 24
resizer on resnet_tiny) under mock TFDS data, on the 8 forced CPU devices."""

import os
import shutil

import orbax.checkpoint as ocp
import tensorflow_datasets as tfds

from configs import common
from resizer import train

NUM_EXAMPLES = 20  # Not a multiple of the eval batch: padding must be masked.


def tiny_config(**overrides):
  """The tiny config: 4 steps, checkpoints at 2 and 4; `overrides` maps
  'block.key' (or 'key') to a value."""
  c = common.imagenet_config('resizer=learned,res=48,out=24', 'resnet_tiny')
  c.model.dtype = 'float32'
  # 2 images per device, so accumulate_steps=2 is possible.
  c.input.update(batch_size=16, eval_batch_size=8, shuffle_buffer=16)
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
  """train_and_evaluate under mock data of NUM_EXAMPLES examples per split."""
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
    return train.train_and_evaluate(config, str(workdir), **kwargs)


def final_params(workdir):
  """The latest checkpoint of `workdir`, restored as saved."""
  mgr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  return mgr.restore(mgr.latest_step(), args=ocp.args.StandardRestore())


def copy_run(source, workdir):
  """A copy of the run in `source` at `workdir`, to resume or change
  without touching the original (shared between tests)."""
  shutil.copytree(source, workdir)
  return workdir

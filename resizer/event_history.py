"""One TensorBoard history per workdir, however often the run resumed.

A run killed after logging step K resumes from its last checkpoint S < K
and logs steps S+1..K again, into a new event file. TensorBoard would show
both (a zig-zag, or two points per step), and TF2 event files carry no
restart marker for it to purge by. So before a resume writes anything, the
events after S are dropped from the earlier files: the resumed run logs
them again.
"""

from absl import logging
import tensorflow as tf

from resizer import paths

try:  # TensorBoard's copy needs no TensorFlow internals.
  from tensorboard.compat.proto import event_pb2
except ImportError:  # pragma: no cover
  from tensorflow.core.util import event_pb2  # type: ignore

PATTERN = 'events.out.tfevents.*'


def event_files(logdir: paths.PathLike) -> list[str]:
  """The event files directly in `logdir` (local or gs://), sorted."""
  return sorted(tf.io.gfile.glob(f'{paths.resolve(logdir)}/{PATTERN}'))


def drop_after(logdir: paths.PathLike, step: int) -> int:
  """Removes every event with a step after `step` from the event files in
  `logdir`, each file rewritten whole and renamed into place; returns how
  many events were dropped. Files with nothing to drop are left as they
  are."""
  dropped = 0
  for path in event_files(logdir):
    records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    kept = [r for r in records
            if event_pb2.Event.FromString(r).step <= step]
    if len(kept) == len(records):
      continue
    tmp = path + '.tmp'
    with tf.io.TFRecordWriter(tmp) as out:
      for record in kept:
        out.write(record)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    dropped += len(records) - len(kept)
  if dropped:
    logging.info('Dropped %d TensorBoard events after step %d from %s: the '
                 'resumed run logs those steps again.', dropped, step, logdir)
  return dropped

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


def _read(path: str) -> tuple[list[bytes], bool]:
  """(the records of an event file, whether its end was cut off): a killed
  writer can leave half a record, which ends the reading, not the run."""
  records = []
  try:
    for record in tf.data.TFRecordDataset(path):
      records.append(record.numpy())
  except tf.errors.DataLossError as e:
    logging.warning('%s ends in a damaged record (%s); keeping the %d '
                    'before it.', path, str(e).splitlines()[0], len(records))
    return records, True
  return records, False


def drop_after(logdir: paths.PathLike, step: int) -> int:
  """Removes every event with a step after `step` from the event files in
  `logdir`, each file rewritten whole and renamed into place; returns how
  many events were dropped. Files with nothing to drop are left as they
  are."""
  dropped = 0
  for path in event_files(logdir):
    records, truncated = _read(path)
    kept = [r for r in records
            if event_pb2.Event.FromString(r).step <= step]
    if len(kept) == len(records) and not truncated:
      continue
    # Not named like an event file, so TensorBoard never reads a half
    # rewrite; renamed over the original when whole.
    directory, name = path.rsplit('/', 1)
    tmp = f'{directory}/.rewrite-{name.replace("tfevents", "events")}'
    with tf.io.TFRecordWriter(tmp) as out:
      for record in kept:
        out.write(record)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    dropped += len(records) - len(kept)
  if dropped:
    logging.info('Dropped %d TensorBoard events after step %d from %s: the '
                 'resumed run logs those steps again.', dropped, step, logdir)
  return dropped

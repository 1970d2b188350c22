r"""Trains a resizer → backbone model.

  python -m resizer.main --config=configs/demo.py --workdir=/tmp/demo
  python -m resizer.main --config=configs/imagenet_densenet.py:resizer=bicubic \
      --workdir=gs://bucket/runs/densenet_bicubic --config.input.batch_size=512

Rerunning the same command with the same workdir resumes from its latest
checkpoint.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, as if the signal had ended us.

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file[:argument].', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, TensorBoard '
                               'logs and results.json go.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # TensorFlow only feeds data: keep it off the accelerators JAX uses.
  import tensorflow as tf
  tf.config.set_visible_devices([], 'GPU')
  from resizer import preemption, train  # After TF is confined.

  config = _CONFIG.value
  if not config.get('name'):
    with config.unlocked():
      config.name = flags.FLAGS['config'].config_filename
  logging.info('Config %s:\n%s', config.name, config)
  try:
    train.train_and_evaluate(config, _WORKDIR.value)
  except preemption.Preempted as e:
    logging.warning('%s', e)
    print(e, file=sys.stderr)
    sys.exit(PREEMPTED_EXIT_CODE)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main)

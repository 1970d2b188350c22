r"""Prints the parameter counts and forward GFLOPs of a config's model.

  python -m resizer.summary --config=configs/imagenet_densenet.py [--json]

The figures are `resizer.models.costs.model_summary`'s (see there how they
are counted).
"""

import json

from absl import flags
from ml_collections import config_flags

from resizer import cli


def main(argv):
  del argv  # cli.run refuses positional arguments.
  config = cli.config('config')
  cli.import_tensorflow()
  from resizer import train
  from resizer.models.costs import format_summary, model_summary
  try:  # The trainer's own checks (those that need no devices or data).
    parts = train.build(config, num_devices=1, num_processes=1)
  except ValueError as e:
    raise cli.UserError(str(e)) from None
  s = model_summary(config, parts.eval_model)
  print(format_summary(s))
  if flags.FLAGS.json:
    print(json.dumps(s))


if __name__ == '__main__':
  # Flags only when run as a command (they would clash with other commands'
  # --config in a process that imports several).
  config_flags.DEFINE_config_file(
      'config', None, 'Experiment config file, e.g. configs/imagenet_densenet.py.',
      lock_config=True)
  flags.DEFINE_bool('json', False, 'End with one JSON line.')
  flags.mark_flags_as_required(['config'])
  cli.run(main, __doc__)

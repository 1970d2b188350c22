r"""Trains a resizer → backbone model.

  python -m resizer.main --config=configs/demo.py --workdir=/tmp/demo
  python -m resizer.main --config=configs/imagenet_densenet.py:resizer=bicubic \
      --workdir=gs://bucket/runs/densenet_bicubic --config.input.batch_size=512

Rerunning the same command with the same workdir resumes from its latest
checkpoint (a config that would train differently is refused unless
--allow_config_change); on SIGTERM (a preemption) it checkpoints and exits
with 143. A workdir is leased to one run at a time (workdir/lease.json).

Several processes (TPU pods, multi-node GPU): `jax.distributed.initialize()`
runs when --jax_distributed=true, or with 'auto' (the default) on a
multi-host Cloud TPU VM or when --coordinator_address is given. Each
process then reads its share of the data; process 0 logs to TensorBoard and
writes results.json, and all of them write checkpoints together.
"""

import os
import sys

from absl import flags, logging
from ml_collections import config_flags

from resizer import cli, hosts

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, as if the signal had ended us.

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file[:argument].', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, TensorBoard '
                               'logs and results.json go.')
_DISTRIBUTED = flags.DEFINE_enum(
    'jax_distributed', 'auto', ['auto', 'true', 'false'],
    'Call jax.distributed.initialize() (auto: on multi-host TPU VMs or when '
    '--coordinator_address is set).')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0 (elsewhere than on '
    'Cloud TPU, where it is discovered).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Process count.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, "This process's index.")
_LIBRARY_LOGS = flags.DEFINE_bool(
    'library_logs', False, "Show the INFO lines of the libraries (Orbax's "
    'checkpoint steps, absl); by default only their warnings and errors.')
_VERBOSE = flags.DEFINE_bool(
    'verbose', False, "With an error, also its traceback.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False, 'Resume even if the config would train '
    'differently from the one recorded in the workdir (the change is recorded '
    'in config_changes.json).')


def wants_distributed(setting: str, coordinator: str | None,
                      environ: dict[str, str]) -> bool:
  """Whether to call jax.distributed.initialize()."""
  if setting != 'auto':
    return setting == 'true'
  multi_host_tpu = ',' in environ.get('TPU_WORKER_HOSTNAMES', '')
  return bool(coordinator) or multi_host_tpu


def initialize_distributed() -> None:
  import jax
  if os.environ.get('JAX_PLATFORMS', '') == 'cpu':
    # CPU processes exchange collectives through gloo.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(
      coordinator_address=_COORDINATOR.value,
      num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
      heartbeat_timeout_seconds=hosts.HEARTBEAT_TIMEOUT_S,
      shutdown_timeout_seconds=hosts.SHUTDOWN_TIMEOUT_S)
  hosts.start()  # One failing process now stops them all, naming itself.
  logging.info('Process %d of %d, %d local of %d devices.',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def main(argv):
  del argv  # cli.run refuses positional arguments.
  if wants_distributed(_DISTRIBUTED.value, _COORDINATOR.value, os.environ):
    initialize_distributed()
  try:
    _train()
  except Exception as e:  # Several processes: every one stops, now.
    hosts.fail(e, show_traceback=True)  # Returns in a single-process job.
    raise


def _train() -> None:
  cli.import_tensorflow()
  from resizer import checkpoints, config_checks, input_pipeline, lease
  from resizer import preemption, run_record, train
  # Failures whose message says it all: one `error:` line, no traceback.
  user_errors = (cli.UserError, config_checks.ConfigError,
                 input_pipeline.DatasetNotReadyError, lease.WorkdirInUse,
                 run_record.ConfigChangedError, checkpoints.SaveFailed,
                 checkpoints.ModelMismatch, checkpoints.UnusableParams)

  config = cli.config('config')
  if not config.name:
    with config.unlocked():
      config.name = flags.FLAGS['config'].config_filename
  try:
    train.train_and_evaluate(config, _WORKDIR.value,
                             allow_config_change=_ALLOW_CONFIG_CHANGE.value)
  except preemption.Preempted as e:
    logging.warning('%s', e)
    print(e, file=sys.stderr)
    sys.exit(PREEMPTED_EXIT_CODE)
  except user_errors as e:
    if _VERBOSE.value:
      logging.exception('Stopped:')
    hosts.fail(e)
    cli.exit_with_error(str(e))  # The message says it all: no traceback.
  except OSError as e:  # A full disk, a lost bucket.
    logging.exception('Stopped by an I/O error.')
    hosts.fail(e)
    where = '' if e.filename or _WORKDIR.value in str(e) else (
        f' (writing under {_WORKDIR.value})')
    cli.exit_with_error(f'{e}{where}')


if __name__ == '__main__':
  flags.mark_flags_as_required(['config', 'workdir'])
  cli.run(main, __doc__)

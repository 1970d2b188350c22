"""What every command-line tool of the package shares: quiet library logs
and the one-line `error:` exit."""

import logging as py_logging
import os
import sys
import tempfile
from typing import NoReturn

from absl import logging


class _QuietLibraries(py_logging.Filter):
  """Drops INFO lines logged from inside the libraries (Orbax alone writes
  several per checkpoint; jax one per backend it cannot start), keeping
  their warnings and errors and ours."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return (record.levelno >= py_logging.WARNING
            or f'{os.sep}site-packages{os.sep}' not in record.pathname)


def quiet_library_logs() -> None:
  """Shows only the libraries' warnings and errors from now on."""
  logging.get_absl_handler().addFilter(_QuietLibraries())


def exit_with_error(message: str) -> NoReturn:
  """Exits with status 1 after printing `error: message` as a line of its own.

  Orbax's writer threads may still be printing tracebacks when a save fails;
  `sys.exit(message)` could then land in the middle of one of their lines (a
  CI run read 'RuntimeErrorRuntimeErrorerror: The checkpoint ...'). One
  write() of under PIPE_BUF bytes is not interleaved, and its leading newline
  ends whatever line another thread left open.
  """
  sys.stdout.flush()
  sys.stderr.flush()
  os.write(sys.stderr.fileno(), f'\nerror: {message}\n'.encode())
  sys.exit(1)


def import_tensorflow():
  """TensorFlow, imported without its start-up lines (TF 2.21 writes them
  through absl's C++ logging, which TF_CPP_MIN_LOG_LEVEL no longer
  silences) unless the import fails, and kept off the accelerators JAX
  uses: it only feeds data."""
  if 'tensorflow' not in sys.modules:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
      os.dup2(held.fileno(), 2)
      try:
        import tensorflow  # noqa: F401
      except BaseException:
        os.dup2(saved, 2)
        held.seek(0)
        os.write(2, held.read())
        raise
      finally:
        os.dup2(saved, 2)
        os.close(saved)
  import tensorflow as tf
  tf.config.set_visible_devices([], 'GPU')
  return tf

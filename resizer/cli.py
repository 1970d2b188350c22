"""What every command-line tool of the package shares: one error path
(`run`: a mistake is one `error:` line and a non-zero exit; a bug keeps its
traceback), a help screen that exits 0, quiet library logs."""

import glob
import logging as py_logging
import os
import re
import sys
import tempfile
from typing import Any, Callable, NoReturn

from absl import app, flags, logging


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
  message = ' '.join(message.split())  # One line, whatever it quotes.
  os.write(sys.stderr.fileno(), f'\nerror: {message}\n'.encode())
  sys.exit(1)


def import_tensorflow(off_accelerators: bool = True):
  """TensorFlow, imported without its start-up lines (TF 2.21 writes them
  through absl's C++ logging, which TF_CPP_MIN_LOG_LEVEL no longer
  silences) unless the import fails; with `off_accelerators` (what the
  tools want, not a module being imported), kept off the GPUs JAX uses:
  it only feeds data."""
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
  if off_accelerators:
    tf.config.set_visible_devices([], 'GPU')
  return tf


class UserError(Exception):
  """A mistake in what the user asked for; its message is the whole story
  (key, file or value, what was expected, what fixes it)."""


HELP_FLAGS = ('-h', '-?', '--help', '--helpshort', '--helpfull')


def run(main: Callable[[list[str]], None], doc: str | None,
        arguments: str | None = None) -> None:
  """absl's app.run(main) with the package's error path: `--help` prints
  the tool's docstring and flags and exits 0; a flag that does not parse,
  positional arguments that are missing (`arguments` names what the tool
  takes) or unexpected (it takes none), and a UserError from `main`, end
  the process with one `error:` line. The libraries' INFO lines are off
  (main's --library_logs shows them)."""
  if any(arg in HELP_FLAGS for arg in sys.argv[1:]):
    print((doc or '').strip() + '\n\nFlags:\n'
          + flags.FLAGS.main_module_help())
    sys.exit(0)

  def guarded(argv):
    if not ('library_logs' in flags.FLAGS and flags.FLAGS.library_logs):
      quiet_library_logs()  # Orbax's INFO lines, in every tool.
    if arguments is None and len(argv) > 1:
      exit_with_error(f'unexpected arguments {argv[1:]}: this tool takes '
                      'only flags (--help lists them)')
    if arguments and len(argv) == 1:
      exit_with_error(f'give {arguments} (--help shows how)')
    skip_absent_accelerators()
    try:
      main(argv)
    except UserError as e:
      exit_with_error(str(e))

  app.run(guarded, flags_parser=parse_flags)


def skip_absent_accelerators() -> None:
  """Runs JAX on the CPU where no TPU or GPU is attached. With libtpu
  installed (the pre-flight's `tpu-compile` extra), JAX would otherwise try
  to start a TPU runtime first, which prints a dozen warnings before falling
  back. JAX_PLATFORMS, when set, decides; the pre-flight's deviceless
  compiles load libtpu on their own."""
  attached = ('/dev/accel*', '/dev/vfio/[0-9]*', '/dev/nvidia[0-9]*')
  if ('JAX_PLATFORMS' not in os.environ
      and not any(glob.glob(pattern) for pattern in attached)):
    os.environ['JAX_PLATFORMS'] = 'cpu'
    if 'jax' in sys.modules:  # It read the variable when imported.
      sys.modules['jax'].config.update('jax_platforms', 'cpu')


def parse_flags(argv: list[str]) -> list[str]:
  """flags.FLAGS(argv), or one `error:` line naming the flag."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:  # A config override's key.
    exit_with_error(str(_no_such_key(e, argv)))
  except flags.Error as e:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    message = lines[0].removesuffix(' Error whilst parsing config file:')
    if len(lines) > 1:  # A config file's own error, with its traceback.
      message = f'{message} {lines[-1]}'
    unknown = re.search(r"Unknown command line flag '(config\.[^']+)'",
                        message)
    if unknown and 'set' in flags.FLAGS:
      message += (f'; this tool passes config keys to every run with '
                  f"--set {unknown[1].removeprefix('config.')}=VALUE")
    exit_with_error(f'{message} (--help lists the flags)')


def _no_such_key(error: Exception, argv: list[str]) -> UserError:
  """A config override that names no key, as ml_collections raises it
  (a KeyError's text inside an AttributeError), named with its flag."""
  text = str(error.args[0] if error.args else error)
  match = re.search(r'([\w.]+)\W*(?:\\n|\n)Did you mean "([^"]+)"', text)
  key = match[1] if match else text.strip('\'"\\')
  override = next((arg.split('=')[0] for arg in argv[1:]
                   if arg.startswith('--config.') and key in arg), None)
  return UserError(
      f"{override or '--config.' + key}: the config has no key {key!r}"
      + (f'; did you mean {match[2]!r}?' if match else
         ' (python -m resizer.summary --config=FILE prints the config).'))


def config(name: str = 'config') -> Any:
  """The ConfigDict of the `--config` flag `name` with its overrides, or a
  UserError naming the file or the override that cannot be applied."""
  flag = flags.FLAGS[name]
  filename = (getattr(flag, 'config_filename', None) or '').split(':')[0]
  if filename and not os.path.exists(filename):
    raise UserError(f'--{name}={filename}: no such config file (the '
                    'configs are in configs/).')
  try:
    return flag.value
  except (AttributeError, KeyError) as e:  # A misspelled override.
    raise _no_such_key(e, sys.argv) from None


def require_parent(flag: str, path: str | None) -> None:
  """UserError unless the folder that `--flag=path` writes into exists."""
  if not path:
    return
  from resizer import paths  # (epath: cheap, but not needed for --help.)
  parent = paths.resolve(path).parent
  if not parent.exists():
    raise UserError(f'--{flag}={path}: the folder {parent} does not exist; '
                    'create it first.')

"""Test-wide setup: eight forced CPU devices, so sharded code runs as on a
multi-device host. Must run before jax initialises its backends."""

import atexit
import fcntl
import json
import os
import shutil
import tempfile

import pytest

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Most XLA optimisation passes off: the tests' programs are tiny, and their
# compile time dominates (a resnet_tiny init: 13.2 s → 1.3 s). Numerics stay
# within every test's tolerance; the subprocesses inherit it.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', 'true')

# Every Python process the tests start finds this checkout first and runs
# tests/startup/sitecustomize.py: less garbage collection while it imports.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ['PYTHONPATH'] = os.pathsep.join(filter(None, (
    _ROOT, os.path.join(_ROOT, 'tests', 'startup'),
    os.environ.get('PYTHONPATH'))))

# TensorFlow's GCS file system reads these once, when tensorflow is imported;
# they matter only to the tests against the local GCS (test_gcs.py): see
# writes made through TensorStore at once, read in small blocks, and fail
# fast instead of retrying for minutes.
os.environ.setdefault('GCS_STAT_CACHE_MAX_AGE', '0')
os.environ.setdefault('GCS_READ_CACHE_BLOCK_SIZE_MB', '1')
os.environ.setdefault('GCS_RETRY_CONFIG_MAX_RETRIES', '2')
os.environ.setdefault('GCS_RETRY_CONFIG_INIT_DELAY_TIME_US', '10000')

# One compilation cache for the session, shared with the subprocesses the
# slow tests start and with pytest-xdist's workers (both inherit this
# environment): the same tiny programs compile once per device count
# instead of once per run (test_topology: 190 s → 129 s warm). Every
# program is cached, however quick to compile: a run's first checkpoint
# alone compiles ~90 small slicing programs in Orbax (2.5 s per process),
# and a warm tiny demo run takes 12.2 s instead of 15.4 s.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _cache = tempfile.mkdtemp(prefix='jax-test-cache-')
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')


def _once_per_session(tmp_path_factory, worker_id: str, name: str, make):
  """(path, make(path)) for the whole session: the first xdist worker to ask
  runs `make` under a file lock, the others wait for it and share the path
  and the (JSON) value it returned."""
  root = tmp_path_factory.getbasetemp()
  if worker_id != 'master':
    root = root.parent  # The session's directory, above each worker's own.
  path, done = root / name, root / f'{name}.json'
  with open(root / f'{name}.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes.
    if not done.exists():
      done.write_text(json.dumps(make(path)))
  return path, json.loads(done.read_text())


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory, worker_id):
  """A TFDS data_dir holding fine_gratings/tiny (64 train, 32 test images),
  prepared once per session."""
  def prepare(path):
    import resizer.datasets  # noqa: F401  (registers fine_gratings)
    import tensorflow_datasets as tfds
    tfds.builder('fine_gratings/tiny', data_dir=str(path)).download_and_prepare()
  return _once_per_session(tmp_path_factory, worker_id, 'tfds', prepare)[0]


@pytest.fixture(scope='session')
def trained_tiny_run(tmp_path_factory, worker_id):
  """(workdir, results) of `tests.tiny_runs.tiny_config()` trained to its
  end, once per session. Tests read it, or resume and change a copy
  (`tiny_runs.copy_run`), never the original."""
  from tests import tiny_runs  # After the environment above is set.
  return _once_per_session(
      tmp_path_factory, worker_id, 'trained_tiny_run',
      lambda path: tiny_runs.run(tiny_runs.tiny_config(), path))


# The slow tier's longest modules, longest first (on 3 xdist workers,
# 2026-11-30: 150, 127, 114, 92, 83, 80, 76 and 54 s): they start first, so
# that the short ones fill the end and no worker is left running alone (the
# three ended 42 s apart before, 11-16 s apart after; the tier itself took
# 385 to 461 s from one run to the next on one machine). The README's
# command passes --no-loadscope-reorder, which keeps this order instead of
# xdist's (most tests first).
_LONGEST_FIRST = ('test_run_record', 'test_topology', 'test_data_parallel',
                  'test_import_weights', 'test_train', 'test_benchmarks',
                  'test_gcs', 'test_multiprocess')


def pytest_collection_modifyitems(items):
  def rank(item):
    name = os.path.basename(item.nodeid.split('::')[0]).removesuffix('.py')
    return (_LONGEST_FIRST.index(name) if name in _LONGEST_FIRST
            else len(_LONGEST_FIRST))
  items.sort(key=rank)  # Stable: the rest keep pytest's order.

"""The processes of one job stop together, and say which one failed.

On a pod slice every host runs the trainer, and the hosts meet in every
collective. A host that raises would otherwise leave the others waiting in
their next collective, and itself in jax's shutdown barrier, until the
coordination service gives up (five minutes), with nothing that names it.
So, once `jax.distributed` is up (`start`):

- each process publishes its host name and, every `ALIVE_EVERY_S`, a beat
  in the coordination service's key-value store (`resizer/...` keys);
- a process that fails writes one line there (`fail`): its index, host and
  error; once process 0 has read it, it leaves with os._exit, never
  entering jax's shutdown barrier;
- a watch thread in every process reads those keys: on another process's
  line, or when another process's beats stop for `STALE_AFTER_S` (killed,
  or its host gone), it runs the registered `on_stop` callbacks (process 0
  records how the launch ended), prints
  `error: process 1 (host H) failed: <its line>` (or `... stopped
  responding`) and exits with status 1, wherever the main thread waits;
- process 0, which hosts the coordination service (a process that loses
  it aborts), leaves last: once every other process has read the failure
  or left (at most about `STALE_AFTER_S`).

A surviving process's main thread may see the failure first, as an error
of a collective whose peer left: `explain` turns that into the same line.
The job's own heartbeat (jax's, `HEARTBEAT_TIMEOUT_S`) stays the backstop
for a host that hangs without failing.
"""

import atexit
import dataclasses
import os
import socket
import sys
import threading
import time
import traceback
from typing import Callable

PREFIX = 'resizer'
ALIVE_EVERY_S = 1.0
# A process whose beats stop this long is taken for dead. Beats come from
# a thread of their own, so a long compile or checkpoint does not stop them.
STALE_AFTER_S = 20.0
# A process that cannot reach the coordination service (process 0) for this
# long takes process 0 for gone.
UNREACHABLE_AFTER_S = 5.0
# jax.distributed.initialize's: the coordination service declares a
# process dead after this long without its heartbeat (jax's default), and
# a process that ends normally waits this long for the others at shutdown.
HEARTBEAT_TIMEOUT_S = 100
SHUTDOWN_TIMEOUT_S = 300
# How long the other processes wait for process 0 to prepare a dataset.
PREPARE_TIMEOUT_S = 24 * 3600


@dataclasses.dataclass
class _Job:
  client: object
  index: int
  count: int
  host: str
  stop_callbacks: list[Callable[[str], None]]
  deciding: threading.Event  # Set: the main thread handles a failure.
  ending: threading.Event    # Set: the process is exiting normally.
  # The process's stderr as it started: the error line goes there even
  # while fd 2 is held elsewhere (cli.import_tensorflow hides TensorFlow's
  # start-up lines by pointing it at a temporary file).
  log: int


_job: _Job | None = None


def _key(*parts) -> str:
  return '/'.join([PREFIX, *map(str, parts)])


def start() -> None:
  """Publishes this process's host and starts its beats and watch thread;
  call once jax.distributed is initialised (a no-op for one process)."""
  global _job
  import jax
  from jax._src import distributed
  client = distributed.global_state.client
  if client is None or jax.process_count() == 1:
    return
  _job = _Job(client, jax.process_index(), jax.process_count(),
              socket.gethostname(), [], threading.Event(), threading.Event(),
              os.dup(sys.stderr.fileno()))
  client.key_value_set(_key('host', _job.index), _job.host)
  watch = threading.Thread(target=_watch, args=(_job,), daemon=True,
                           name='resizer-hosts')
  watch.start()

  def stop_watching():
    """Before jax's own atexit shutdown (atexit runs the latest first): a
    call into a client that is shutting down can abort the process. The
    others stop counting this process's beats."""
    try:
      client.key_value_set(_key('done', _job.index), '1')
    except Exception:
      pass
    _job.ending.set()
    watch.join(timeout=5 * ALIVE_EVERY_S)

  atexit.register(stop_watching)


def on_stop(callback: Callable[[str], None]) -> None:
  """`callback(reason)` runs before this process exits because of a failure
  (its own or another process's), e.g. to record how the launch ended;
  the latest registered runs first."""
  if _job is not None:
    _job.stop_callbacks.append(callback)


def _host(job: _Job, index: int) -> str:
  try:
    return job.client.key_value_try_get(_key('host', index))
  except Exception:  # Not published, or the service is gone.
    return 'unknown host'


def _failures(job: _Job) -> dict[int, str]:
  """The failure lines other processes have written, by process index."""
  entries = job.client.key_value_dir_get(_key('failed'))
  return {int(k.rsplit('/', 1)[1]): v for k, v in entries
          if int(k.rsplit('/', 1)[1]) != job.index}


class _Beats:
  """The other processes' beat counts, and when each last moved (by this
  process's clock: hosts' clocks need not agree)."""

  def __init__(self, job: _Job):
    self.job, self.first, self.seen, self.done = job, None, {}, set()
    self.others = [i for i in range(job.count) if i != job.index]

  def look(self) -> tuple[set[int], int | None]:
    """(the processes whose count moved since the first look, the first
    process whose count has not moved for STALE_AFTER_S, if any)."""
    now = time.monotonic()
    counts = dict(self.job.client.key_value_dir_get(_key('alive')))
    done = dict(self.job.client.key_value_dir_get(_key('done')))
    self.done = {i for i in self.others if _key('done', i) in done}
    counts = {i: counts.get(_key('alive', i)) for i in self.others}
    if self.first is None:
      self.first = counts
    stale = None
    for i, count in counts.items():
      if self.seen.get(i, (None,))[0] != count:
        self.seen[i] = (count, now)
      elif (now - self.seen[i][1] > STALE_AFTER_S and stale is None
            and i not in self.done):  # Ended normally: not silent.
        stale = i
    moved = {i for i in self.others if counts[i] != self.first[i]}
    return moved, stale


def _watch(job: _Job) -> None:
  """Beats until the process ends (or exits normally); acts on another
  process's failure or silence unless the main thread is already deciding
  (in `fail`)."""
  beats = _Beats(job)
  failing_since = None  # When the service stopped answering this process.
  while not job.ending.is_set():
    reason = None
    try:
      job.client.key_value_increment(_key('alive', job.index), 1)
      failing_since = None
      if not job.deciding.is_set():
        reason = _failure_or_silence(job, beats)[0]
    except Exception:  # The coordination service is slow, gone or going.
      now = time.monotonic()
      failing_since = failing_since or now
      # Process 0 hosts it; once a process has begun a normal exit the job
      # is shutting down; and one failed call is not an absence.
      if (job.index != 0 and not beats.done and not job.deciding.is_set()
          and now - failing_since > UNREACHABLE_AFTER_S):
        reason = _unreachable(job)
    if reason and not job.ending.is_set():
      _finish(job, reason)
    job.ending.wait(ALIVE_EVERY_S)


def _failure_or_silence(job: _Job, beats: _Beats
                        ) -> tuple[str | None, set[int]]:
  """(why another process is gone, if one is; the processes seen alive)."""
  failed = _failures(job)
  if failed:
    i = min(failed)
    try:  # Process 0 waits for this before it leaves.
      job.client.key_value_set(_key('read', job.index), '1')
    except Exception:
      pass
    return f'process {i} ({_host(job, i)}) failed: {failed[i]}', set()
  moved, stale = beats.look()
  if stale is not None:
    return f'process {stale} ({_host(job, stale)}) stopped responding', moved
  return None, moved


def _unreachable(job: _Job) -> str:
  return (f'process 0 ({_host(job, 0)}) stopped responding: its '
          'coordination service is unreachable')


_finishing = threading.Lock()


def _finish(job: _Job, reason: str) -> None:
  """Runs the on_stop callbacks, prints `error: reason` and exits with
  status 1 at once: not through jax's shutdown barrier, which would wait
  for the processes that are gone. Whichever thread comes second waits
  for the first to end the process."""
  if not _finishing.acquire(blocking=False):
    time.sleep(3600)
  for callback in reversed(job.stop_callbacks):  # The latest first.
    try:
      callback(reason)
    except Exception:  # Recording is best effort: leave all the same.
      traceback.print_exc()
  if job.index == 0:
    try:
      _wait_for_the_others(job)
    except Exception:  # The service is gone already.
      pass
  # The last line of the log, written in one piece: the other threads (the
  # main one may still be logging) write to /dev/null from here on.
  sys.stdout.flush()
  sys.stderr.flush()
  devnull = os.open(os.devnull, os.O_WRONLY)
  for stream in (sys.stdout, sys.stderr):
    os.dup2(devnull, stream.fileno())
  os.write(job.log, f'\nerror: {reason}\n'.encode())
  os._exit(1)


def fail(error: BaseException, show_traceback: bool = False) -> None:
  """Ends the job for `error`, raised in this process's main thread. If
  another process failed or stopped responding first (and `error` is what
  its absence did here, e.g. a collective whose peer left), that process
  is named; otherwise `error` is written for the others to read. Then the
  `on_stop` callbacks run and the process exits with status 1, process 0
  last (`show_traceback`: after printing `error`'s traceback, as for
  a bug). A no-op in a single-process job."""
  job = _job
  if job is None:
    return
  if show_traceback:
    traceback.print_exception(error)
  job.deciding.set()  # From here the main thread decides.
  reason = explain(job)
  if reason is None:
    line = ' '.join(f'{type(error).__name__}: {error}'.split('\n')[0].split())
    reason = f'process {job.index} ({job.host}) failed: {line}'
    try:
      job.client.key_value_set(_key('failed', job.index), line)
      if job.index != 0:
        _wait_until_read_by_process_0(job)
    except Exception:  # The service is gone: nobody is left to tell.
      pass
  _finish(job, reason)


def explain(job: _Job) -> str | None:
  """Another process's failure or silence that explains an error here, or
  None once every other process's beats have moved (the error is ours)."""
  beats = _Beats(job)
  deadline = time.monotonic() + STALE_AFTER_S + 2 * ALIVE_EVERY_S
  try:
    while time.monotonic() < deadline:
      reason, moved = _failure_or_silence(job, beats)
      if reason or len(moved) == len(beats.others):
        return reason
      time.sleep(ALIVE_EVERY_S / 2)
  except Exception:  # For process 0, which hosts it, that is its own error.
    return None if job.index == 0 else _unreachable(job)
  return None


def _wait_until_read_by_process_0(job: _Job, timeout_s: float = 5.0) -> None:
  """A failing process stays until process 0 has read its line (a watch
  thread reads every ALIVE_EVERY_S), so that its leaving, which breaks the
  collectives, is not what process 0 learns first."""
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    if any(k == _key('read', 0)
           for k, _ in job.client.key_value_dir_get(_key('read'))):
      return
    time.sleep(ALIVE_EVERY_S / 4)


def _wait_for_the_others(job: _Job) -> None:
  """Process 0 hosts the coordination service, and a process whose service
  vanishes aborts: so process 0 stays until every other process has read
  the failure or has left (its beats stopped), at most about
  STALE_AFTER_S."""
  beats = _Beats(job)
  deadline = time.monotonic() + STALE_AFTER_S + 2 * ALIVE_EVERY_S
  while time.monotonic() < deadline:
    read = {int(k.rsplit('/', 1)[1])
            for k, _ in job.client.key_value_dir_get(_key('read'))}
    beats.look()
    gone = {i for i, (_, t) in beats.seen.items()
            if time.monotonic() - t > 2.5 * ALIVE_EVERY_S}
    if read | gone >= set(beats.others):
      return
    time.sleep(ALIVE_EVERY_S / 2)


def wait_for_process_0(what: str, timeout_s: float = PREPARE_TIMEOUT_S) -> None:
  """A barrier of every process, with a timeout: the others wait here while
  process 0 does `what` (e.g. prepares a dataset). If process 0 fails
  meanwhile, the watch thread ends the job."""
  if _job is None:
    import jax
    if jax.process_count() > 1:  # jax.distributed without start().
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(what)
    return
  _job.client.wait_at_barrier(_key('barrier', what.replace(' ', '_')),
                              int(timeout_s * 1000))

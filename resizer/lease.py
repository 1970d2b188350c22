"""One owner per workdir: a lease file taken before a run writes anything.

`workdir/lease.json` holds the owner's host, pid, start time and a
heartbeat that the training loop refreshes. A second launch on the same
workdir refuses, naming the owner. A lease is stale, and is taken over with
a warning, when its pid is dead on this host or its heartbeat is older than
`stale_after` seconds (another host that stopped without releasing it).

Several processes: process 0 holds the lease for the whole job; the others
take no lease. On a local disk the lease is created atomically (O_EXCL); on
an object store a check-then-write leaves a window of about one request
between two launches started at the same moment.
"""

import json
import os
import socket
import time

from absl import logging

from resizer import paths

LEASE_FILE = 'lease.json'
STALE_AFTER_SEC = 600.0


class WorkdirInUse(RuntimeError):
  """Another live run owns the workdir."""


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Alive, under another user.
    return True
  return True


class Lease:
  """The lease on `workdir`; `acquire()` before writing, `release()` at the
  end (also on errors), `heartbeat()` from the loop (throttled)."""

  def __init__(self, workdir: paths.PathLike,
               stale_after: float = STALE_AFTER_SEC,
               heartbeat_every: float = 30.0):
    self.path = paths.resolve(workdir) / LEASE_FILE
    self.stale_after = stale_after
    self.heartbeat_every = heartbeat_every
    self.owner = dict(host=socket.gethostname(), pid=os.getpid(),
                      started=time.time())
    self._last_beat = 0.0
    self._held = False

  def _record(self) -> str:
    self._last_beat = time.time()
    return json.dumps({**self.owner, 'heartbeat': self._last_beat})

  def _read(self) -> dict | None:
    try:
      return json.loads(self.path.read_text())
    except FileNotFoundError:
      return None
    except ValueError:  # Torn or foreign: treat as stale.
      return {}

  def _stale_reason(self, held: dict) -> str | None:
    """Why the lease `held` can be taken over, or None if it is live."""
    if not held:
      return 'unreadable lease file'
    age = time.time() - float(held.get('heartbeat', 0))
    if held.get('host') == self.owner['host'] and not _pid_alive(
        int(held.get('pid', -1))):
      return f"pid {held.get('pid')} is no longer running on this host"
    if age > self.stale_after:
      return f'its heartbeat is {age:.0f} s old (> {self.stale_after:.0f} s)'
    return None

  def acquire(self) -> None:
    """Takes the lease, or raises WorkdirInUse naming the live owner."""
    self.path.parent.mkdir(parents=True, exist_ok=True)
    if not paths.is_url(self.path):
      try:  # Atomic on a local disk: exactly one launch creates the file.
        fd = os.open(os.fspath(self.path), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        with os.fdopen(fd, 'w') as f:
          f.write(self._record())
        self._held = True
        return
      except FileExistsError:
        pass
    held = self._read()
    if held is not None:
      reason = self._stale_reason(held)
      if reason is None:
        raise WorkdirInUse(
            f"{self.path.parent} is in use by pid {held['pid']} on host "
            f"{held['host']} (started {time.ctime(held['started'])}, last "
            f"heartbeat {time.time() - held['heartbeat']:.0f} s ago). Stop "
            f'that run or choose another --workdir; nothing was written. '
            f'If that run is gone, delete {self.path}.')
      logging.warning('Taking over the lease on %s: %s (was %s).',
                      self.path.parent, reason, held)
    paths.write_text_atomic(self.path, self._record())
    self._held = True

  def heartbeat(self) -> None:
    """Refreshes the heartbeat, at most every `heartbeat_every` seconds."""
    if self._held and time.time() - self._last_beat >= self.heartbeat_every:
      paths.write_text_atomic(self.path, self._record())

  def release(self) -> None:
    """Gives the lease up (only if this process still holds it)."""
    if not self._held:
      return
    self._held = False
    held = self._read()
    if held and held.get('pid') == self.owner['pid'] and held.get(
        'host') == self.owner['host']:
      self.path.unlink(missing_ok=True)

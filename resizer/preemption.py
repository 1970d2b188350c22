"""Stopping cleanly when the job is preempted (SIGTERM, as Cloud TPU sends).

Single process: a SIGTERM handler sets a flag that the loop reads after each
step. Several processes: every process must stop at the same step, so JAX's
preemption sync point decides (it is fed by the same signal through
`jax.distributed`).
"""

import signal

import jax
from jax.experimental import multihost_utils


class Preempted(Exception):
  """Training stopped on SIGTERM after saving a checkpoint."""


class PreemptionWatcher:
  """Tells the training loop when to checkpoint and stop."""

  def __init__(self):
    self._signalled = False
    self._previous = None
    if jax.process_count() == 1:
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame):
    del signum, frame
    self._signalled = True

  def should_stop(self, step: int) -> bool:
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._signalled

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

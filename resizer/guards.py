"""What keeps a workdir sound while a run trains, behind one interface.

The training loop tells `Guards` when a step is done, when the losses are
to be checked, and when a checkpoint is due. Guards keep the lease alive,
stop the run when a background save failed, save a checkpoint only after
every loss since the last one was finite, record the segment in
segments.json, and on SIGTERM save and stop (`preemption.Preempted`).
"""

import jax
import numpy as np

from resizer import checkpoints, lease, preemption, run_record


class Guards:
  """The lease, checkpoint saver, preemption watcher and segment record of
  a run that trains; a context manager that closes the saver and watcher."""

  def __init__(self, owner: lease.Lease, mgr, segments: run_record.Segments):
    self.owner, self.mgr, self.segments = owner, mgr, segments
    self.watcher = preemption.PreemptionWatcher()
    self.saver = checkpoints.Saver(mgr)

  def __enter__(self) -> 'Guards':
    return self

  def __exit__(self, *exc_info) -> None:
    self.watcher.close()
    self.saver.close()

  def step_done(self) -> None:
    """Keeps the lease; raises if a background save failed."""
    self.owner.heartbeat()
    self.saver.check()

  def check_losses(self, pending: list[dict], step: int) -> None:
    """Raises at the first non-finite loss in `pending` (the steps up to
    `step` since the last check)."""
    check_finite(pending, step, self.mgr.latest_step())

  def save(self, step: int, state) -> None:
    """Checkpoints `state` (its losses checked) and records the segment."""
    self.saver.save(state)
    self.segments.update(step)

  def stop_if_preempted(self, step: int, state, pending: list[dict]) -> None:
    """On SIGTERM (or the job's preemption sync point): checks the losses,
    saves `state`, waits for the save and raises Preempted."""
    if not self.watcher.should_stop(step):
      return
    self.check_losses(pending, step)
    self.saver.save(state)
    self.saver.close()
    self.segments.update(step)
    raise preemption.Preempted(
        f'Preempted (SIGTERM) after step {step}: checkpoint saved in '
        f'{self.mgr.directory}. Rerun the same command to resume.')


def check_finite(pending: list[dict], step: int,
                 last_checkpoint: int | None) -> None:
  """Raises at the first step whose training loss was NaN or infinite."""
  losses = np.asarray(jax.device_get([m['loss'] for m in pending]))
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    first = step - len(pending) + 1 + int(bad[0])
    raise FloatingPointError(
        f'Training loss is {losses[bad[0]]} at step {first}; stopping. The '
        f'last good checkpoint is step {last_checkpoint} (not overwritten).')

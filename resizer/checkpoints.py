"""Orbax checkpoints of the train state: save, resume, and warm starts.

The state is a plain dict {'step', 'params', 'batch_stats', 'opt_state'};
the data position is derived from 'step' (see input_pipeline), so resuming
restores the schedule, the optimiser and the data stream together.

Every saved step carries a fingerprint of its arrays (a 32-bit checksum of
each array's bits, in the step's Orbax metadata). A resume takes the latest
step that restores and matches its fingerprint; a step that fails is named
and moved to `workdir/corrupt_checkpoints/`, never deleted. A step that is
sound but holds non-finite or absurdly large parameters stops the run: it
is what training (or an import) wrote, so an earlier step would only lead
back to it.
"""

import logging as py_logging
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from resizer import paths
from resizer.models import composite

State = dict[str, Any]


def directory(workdir: paths.PathLike):
  """Where a run in `workdir` (local or gs://) keeps its checkpoints."""
  return paths.resolve(workdir) / 'checkpoints'


def _state_handler() -> ocp.PyTreeCheckpointHandler:
  """Writes and reads the state as Orbax's StandardCheckpointHandler does
  (which reads these checkpoints too), except on CPU: there Orbax's
  replica-parallel save, which splits every replicated array into one slice
  per device to write them in parallel, buys nothing (the devices share the
  host's memory) and costs one compiled slicing program per array shape
  and device, and a dispatch per slice at every save. Orbax turns it off
  for GPUs; on TPUs and GPUs its default stands."""
  if jax.default_backend() != 'cpu':
    return ocp.PyTreeCheckpointHandler()
  th = ocp.type_handlers
  scalar = th.ScalarHandler()
  return ocp.PyTreeCheckpointHandler(
      type_handler_registry=th.create_type_handler_registry(
          (int, scalar), (float, scalar), (bytes, scalar), (np.number, scalar),
          (np.ndarray, th.NumpyHandler()), (str, th.StringHandler()),
          (jax.Array, th.ArrayHandler(use_replica_parallel=False))))


def manager(workdir: paths.PathLike, keep: int, async_save: bool = True
            ) -> ocp.CheckpointManager:
  """The run's checkpoint manager in `workdir/checkpoints`; with `async_save`
  training continues while a checkpoint is written."""
  return ocp.CheckpointManager(
      directory(workdir), item_handlers=_state_handler(),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=keep, create=True,
          enable_async_checkpointing=async_save))


def _reader(workdir: paths.PathLike) -> ocp.CheckpointManager | None:
  """A read-only manager of `workdir/checkpoints`, or None without one."""
  path = directory(workdir)
  if not path.is_dir():
    return None
  return ocp.CheckpointManager(
      path, item_handlers=ocp.StandardCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(create=False, read_only=True))


def has_checkpoint(workdir: paths.PathLike) -> bool:
  """Whether `workdir/checkpoints` holds a checkpoint to resume from."""
  mgr = _reader(workdir)
  return mgr is not None and mgr.latest_step() is not None


@jax.jit
def _checksums(leaves: list[jax.Array]) -> list[jax.Array]:
  """Per array: the sum of its 32-bit words times odd weights, mod 2^32, so
  that changing any one word changes the sum."""
  sums = []
  for x in leaves:
    x = jnp.asarray(x)
    if x.dtype == jnp.bool_:
      x = x.astype(jnp.uint8)
    words = {1: jnp.uint8, 2: jnp.uint16}.get(x.dtype.itemsize, jnp.uint32)
    bits = jax.lax.bitcast_convert_type(x, words).astype(jnp.uint32).ravel()
    weights = 2 * jnp.arange(bits.size, dtype=jnp.uint32) + 1
    sums.append(jnp.sum(bits * weights, dtype=jnp.uint32))
  return sums


def fingerprint(state: State) -> dict[str, int]:
  """{array path: checksum} of `state`, computed where its arrays are."""
  flat = jax.tree_util.tree_flatten_with_path(state)[0]
  sums = jax.device_get(_checksums([x for _, x in flat]))
  return {jax.tree_util.keystr(p): int(s) for (p, _), s in zip(flat, sums)}


def save(mgr: ocp.CheckpointManager, state: State) -> None:
  """Saves `state` at its step (asynchronously if the manager is async),
  with its fingerprint."""
  step = int(jax.device_get(state['step']))
  if mgr.latest_step() != step:
    mgr.save(step, args=ocp.args.PyTreeSave(state),
             custom_metadata={'fingerprint': fingerprint(state)})


class SaveFailed(RuntimeError):
  """A checkpoint that was not written; training stops."""


class _LastError(py_logging.Handler):
  """Keeps the last exception that Orbax logged (its background save thread
  logs a failed write instead of raising it)."""

  def __init__(self):
    super().__init__(py_logging.ERROR)
    self.error: BaseException | None = None

  def emit(self, record: py_logging.LogRecord) -> None:
    if record.exc_info and record.exc_info[1] is not None:
      self.error = record.exc_info[1]


class Saver:
  """Saves the state at its step and checks, at every later step, that the
  last save was committed: a failed asynchronous save stops the run at the
  next step, naming the path and the cause, with the earlier checkpoints
  intact."""

  def __init__(self, mgr: ocp.CheckpointManager):
    self.mgr = mgr
    self._unconfirmed: int | None = None
    self._closed = False
    self._errors = _LastError()
    py_logging.getLogger().addHandler(self._errors)

  def save(self, state: State) -> None:
    self.check()
    step = int(jax.device_get(state['step']))
    try:
      save(self.mgr, state)
    except Exception as e:  # pylint: disable=broad-except
      # Orbax first waits for the previous save, and raises its failure
      # here when it was still running at the last check.
      self._errors.error = e
      self.check()  # The previous step, if that is what failed.
      raise self._failed(step) from e
    self._unconfirmed = step

  def _failed(self, step: int) -> SaveFailed:
    cause = self._errors.error
    cause = (f'{type(cause).__name__}: {str(cause).strip().splitlines()[0]}'
             if cause else 'see the error logged above')
    good = [s for s in self.mgr.all_steps() if s < step]
    return SaveFailed(
        f'The checkpoint of step {step} was not written to '
        f'{self.mgr.directory}/{step} ({cause}); stopping. The last good '
        f'checkpoint is step {max(good) if good else None}.')

  def check(self) -> None:
    """Raises SaveFailed if the last save finished without its step."""
    step = self._unconfirmed
    if step is None or self.mgr.is_saving_in_progress():
      return
    self._unconfirmed = None
    try:
      self.mgr.check_for_errors()
    except Exception as e:  # pylint: disable=broad-except
      self._errors.error = e
    # Orbax lists a step from the moment its save starts: ask the store.
    self.mgr.reload()
    if step not in self.mgr.all_steps():
      raise self._failed(step)

  def close(self) -> None:
    """Waits for the last save and closes the manager; checks the save
    unless another error is already on its way (which it must not hide)."""
    if self._closed:
      return
    self._closed = True
    in_flight = sys.exc_info()[0] is not None
    try:
      try:
        self.mgr.wait_until_finished()
      except Exception as e:  # pylint: disable=broad-except
        self._errors.error = e  # A failed save: check() names it.
      if not in_flight:
        self.check()
    finally:
      py_logging.getLogger().removeHandler(self._errors)
      try:
        self.mgr.close()
      except Exception:  # pylint: disable=broad-except
        # Orbax raises a failed save once more here; it is reported.
        logging.warning('Closing %s after a failed save.', self.mgr.directory)


class CorruptCheckpoint(ValueError):
  """A saved step that cannot be restored as it was saved."""


class ModelMismatch(ValueError):
  """A sound checkpoint of another model than the one being built."""


class UnusableParams(ValueError):
  """A sound checkpoint whose parameters are NaN, infinite or out of range."""


# Trained CNN weights stay within a few hundred; a magnitude past this is a
# damaged value (a flipped exponent bit) in a step saved without a
# fingerprint, or a run that went off the rails without a NaN loss.
MAX_ABS_PARAM = 1e15


def _model_arrays(tree) -> dict[str, tuple[int, ...]]:
  """{path: shape} of the parameters and BN statistics (nested dicts, whose
  paths read the same in a target and in Orbax's metadata)."""
  return {c + jax.tree_util.keystr(p): tuple(x.shape)
          for c in ('params', 'batch_stats', 'ema_params')
          for p, x in jax.tree_util.tree_flatten_with_path(tree.get(c, {}))[0]}


def _check_model(mgr: ocp.CheckpointManager, step: int, target: State
                 ) -> None:
  """Raises ModelMismatch if `step` holds another model than `target`."""
  saved = mgr.item_metadata(step)
  saved = _model_arrays(dict(getattr(saved, 'tree', saved) or {}))
  ours = _model_arrays(target)
  if saved and saved != ours:
    diff = sorted(set(saved.items()) ^ set(ours.items()))[0][0]
    raise ModelMismatch(
        f'{mgr.directory}/{step} holds another model than this config '
        f'builds (first difference: {diff}: {saved.get(diff, "absent")} saved, '
        f'{ours.get(diff, "absent")} here). Use the run\'s own config or '
        'another --workdir.')


def _verify(mgr: ocp.CheckpointManager, step: int, state: State) -> None:
  """Raises CorruptCheckpoint if `state` (restored at `step`) differs from
  its saved fingerprint (arrays whose path the fingerprint lacks, as in
  older checkpoints and imports, are not checked)."""
  saved = (mgr.metadata(step).custom_metadata or {}).get('fingerprint', {})
  now = fingerprint(state)
  changed = [k for k, v in now.items() if k in saved and saved[k] != v]
  if changed:
    raise CorruptCheckpoint(
        f'{len(changed)} arrays differ from the fingerprint saved with them, '
        f'e.g. {changed[0]}')


def _check_params(mgr: ocp.CheckpointManager, step: int, state: State
                  ) -> None:
  """Raises UnusableParams naming the first parameter that is NaN, infinite
  or larger in magnitude than MAX_ABS_PARAM."""
  for path, x in jax.tree_util.tree_flatten_with_path(state['params'])[0]:
    x = np.asarray(jax.device_get(x), np.float32)
    bad = ('NaN or infinite values' if not np.all(np.isfinite(x)) else
           f'|values| up to {np.abs(x).max():.3g}'
           if x.size and np.abs(x).max() > MAX_ABS_PARAM else None)
    if bad:
      raise UnusableParams(
          f'{mgr.directory}/{step}: params{jax.tree_util.keystr(path)} '
          f'holds {bad}. Training does not resume from it; start again from '
          'an earlier step (copy it into a new --workdir) or from scratch.')


def restore_latest(mgr: ocp.CheckpointManager, target: State,
                   workdir: paths.PathLike) -> State | None:
  """The latest good checkpoint laid out like `target` (arrays or shape
  structs with shardings), or None when there is none. The checkpoint may
  come from any number of devices or hosts: each array is read into
  `target`'s sharding. A latest step that fails to restore or to verify is
  reported, moved to `workdir/corrupt_checkpoints/` and the step before it
  is tried. A sound step of another model raises ModelMismatch, and one
  with unusable parameters raises UnusableParams; neither is moved."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  while (step := mgr.latest_step()) is not None:
    try:
      _check_model(mgr, step, target)
      state = mgr.restore(step, args=ocp.args.PyTreeRestore(
          abstract, ocp.checkpoint_utils.construct_restore_args(abstract)))
      _verify(mgr, step, state)
    except ModelMismatch:
      raise  # A sound checkpoint of something else: not ours to move.
    except Exception as e:  # pylint: disable=broad-except
      # Orbax and TensorStore raise many types for damaged files.
      _set_aside(mgr, step, workdir, e)
      continue
    _check_params(mgr, step, state)
    return state
  return None


def _set_aside(mgr: ocp.CheckpointManager, step: int,
               workdir: paths.PathLike, error: Exception) -> None:
  """Moves a bad step out of the manager's sight (process 0; the others
  reach the same verdict from the same bytes and wait for it)."""
  source = directory(workdir) / str(step)
  target = (paths.resolve(workdir) / 'corrupt_checkpoints'
            / f'{step}-{time.strftime("%Y%m%d-%H%M%S")}')
  reason = str(error).strip().splitlines()[0][:500] if str(error) else ''
  logging.error('Checkpoint %s cannot be used (%s: %s); moving it to %s and '
                'trying the step before it.', source, type(error).__name__,
                reason, target)
  if jax.process_index() == 0:
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f'set aside checkpoint {step}')
  mgr.reload()


def load(workdir: paths.PathLike,
         sharding: jax.sharding.Sharding | None = None) -> State:
  """The latest state saved in `workdir` (a run or an import), whatever its
  structure and whatever device count or host count wrote it, with every
  array placed by `sharding` (default: whole on this process's first
  device, as the command-line tools want it)."""
  mgr = _reader(workdir)
  step = mgr.latest_step() if mgr is not None else None
  if step is None:
    raise FileNotFoundError(f'{workdir} has no checkpoint in '
                            f'{directory(workdir)}.')
  sharding = sharding or jax.sharding.SingleDeviceSharding(
      jax.local_devices()[0])
  # The saved shapes and dtypes, with our placement instead of the saved
  # one: restoring without a target fails on any other topology.
  metadata = mgr.item_metadata(step)
  abstract = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
      getattr(metadata, 'tree', metadata))
  return mgr.restore(step, args=ocp.args.StandardRestore(abstract))


def warm_start(state: State, source: State, parts: str) -> State:
  """`state` with the params and BN statistics of `parts` taken from `source`.

  `parts` is config.init_from.parts ('all' or one of composite.PARTS, as
  config_checks.validate has checked). Shapes must agree, except for a
  backbone `head` whose class count differs, which keeps its fresh
  initialisation. Optimiser state and step stay fresh.
  """
  names = composite.PARTS if parts == 'all' else (parts,)
  new = dict(state)
  for collection in ('params', 'batch_stats'):
    merged = dict(state[collection])
    for name in names:
      if name in state[collection]:
        if name not in source.get(collection, {}):
          raise ValueError(f'init_from checkpoint has no {collection}/{name}.')
        merged[name] = _take(state[collection][name],
                             source[collection][name], f'{collection}/{name}')
    new[collection] = merged
  return new


def _take(current, loaded, where: str):
  """`loaded` placed like `current`, checked leaf by leaf."""
  flat_cur = dict(jax.tree_util.tree_flatten_with_path(current)[0])
  flat_new = {k: v for k, v in jax.tree_util.tree_flatten_with_path(loaded)[0]}
  out = {}
  for path, cur in flat_cur.items():
    key = jax.tree_util.keystr(path)
    if path not in flat_new:
      raise ValueError(f'init_from: {where}{key} is missing in the checkpoint.')
    new = flat_new[path]
    if new.shape != cur.shape:
      if where.endswith('backbone') and key.startswith("['head']"):
        new = cur  # A new class count: keep the fresh head.
      else:
        raise ValueError(f'init_from: {where}{key} has shape {new.shape} in '
                         f'the checkpoint but {cur.shape} in this model.')
    out[path] = jax.device_put(new.astype(cur.dtype), cur.sharding)
  treedef = jax.tree_util.tree_structure(current)
  return jax.tree_util.tree_unflatten(
      treedef, [out[p] for p, _ in jax.tree_util.tree_flatten_with_path(current)[0]])

"""Orbax checkpoints of the train state: save, resume, and warm starts.

The state is a plain dict {'step', 'params', 'batch_stats', 'opt_state'};
the data position is derived from 'step' (see input_pipeline), so resuming
restores the schedule, the optimiser and the data stream together.
"""

import json
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from resizer import paths

State = dict[str, Any]
PARTS = ('all', 'resizer', 'backbone')
# Written by resizer.import_weights next to the checkpoints it makes.
IMPORTED_JSON = 'imported.json'


def directory(workdir: paths.PathLike):
  """Where a run in `workdir` (local or gs://) keeps its checkpoints."""
  return paths.resolve(workdir) / 'checkpoints'


def manager(workdir: paths.PathLike, keep: int, async_save: bool = True
            ) -> ocp.CheckpointManager:
  """The run's checkpoint manager in `workdir/checkpoints`; with `async_save`
  training continues while a checkpoint is written."""
  return ocp.CheckpointManager(
      directory(workdir),
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


def save(mgr: ocp.CheckpointManager, state: State) -> None:
  """Saves `state` at its step (asynchronously if the manager is async)."""
  step = int(jax.device_get(state['step']))
  if mgr.latest_step() != step:
    mgr.save(step, args=ocp.args.StandardSave(state))


def restore_latest(mgr: ocp.CheckpointManager, target: State) -> State | None:
  """The latest checkpoint laid out like `target` (arrays or shape structs
  with shardings), or None when there is none. The checkpoint may come from
  any number of devices or hosts: each array is read into `target`'s
  sharding."""
  step = mgr.latest_step()
  if step is None:
    return None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  return mgr.restore(step, args=ocp.args.StandardRestore(abstract))


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


def read_json(path: paths.PathLike) -> Any:
  """A JSON file (local or gs://)."""
  return json.loads(paths.resolve(path).read_text())


def load_run(workdir: paths.PathLike
             ) -> tuple[ml_collections.ConfigDict, State, int]:
  """(config, {'params', 'batch_stats'}, step) of the latest checkpoint of a
  run written by resizer.main, on this process's first device."""
  path = paths.resolve(workdir) / 'config.json'
  if not path.exists():
    raise FileNotFoundError(f'{path} is missing: is {workdir} a run directory '
                            'written by resizer.main?')
  config = ml_collections.ConfigDict(read_json(path))
  state = load(workdir)
  return config, {'params': state['params'],
                  'batch_stats': state['batch_stats']}, int(state['step'])


def source_model(workdir: paths.PathLike) -> tuple[dict | None, dict | None]:
  """(config.model, imported.json) of a warm-start source: a run's workdir
  gives its config's model block and None; an import directory gives the
  imported model and its description. (None, None) when neither is there."""
  root = paths.resolve(workdir)
  if (root / IMPORTED_JSON).exists():
    description = read_json(root / IMPORTED_JSON)
    return description['model'], description
  if (root / 'config.json').exists():
    return read_json(root / 'config.json').get('model'), None
  return None, None


def warm_start(state: State, source: State, parts: str) -> State:
  """`state` with the params and BN statistics of `parts` taken from `source`.

  Shapes must agree, except for a backbone `head` whose class count differs,
  which keeps its fresh initialisation. Optimiser state and step stay fresh.
  """
  if parts not in PARTS:
    raise ValueError(f'config.init_from.parts={parts!r} is invalid; expected '
                     f'one of {list(PARTS)}.')
  names = ('resizer', 'backbone') if parts == 'all' else (parts,)
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

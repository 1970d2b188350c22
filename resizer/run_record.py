"""What a workdir holds besides its checkpoints, read and written here only.

- `config.json`: the config that training computes with. A resume compares
  the new config with it first: a change to any key that changes what
  training computes is refused (naming each key and both values) unless
  explicitly allowed, and an allowed change is appended to
  `config_changes.json` before `config.json` is replaced.
- `segments.json`: one entry per launch (start and end step, wall time,
  device and host count), updated at every checkpoint and at the end, so a
  killed launch still counts up to its last checkpoint.
- `results.json`: the final evaluation of training, the segments and their
  totals; `eval_only` evaluations are appended to it and do not replace it.
- `imported.json`: in a directory made by `resizer.import_weights` instead
  of a run, what the imported weights are (model, convention, source).

The trainer, `report`, `export` and `visualize` all read a workdir through
this module. It imports neither JAX nor the models at load time, so the
tools that only read JSON start at once.
"""

import json
import time
from typing import Any

import ml_collections
from absl import logging

from resizer import paths
from resizer.models import conventions

CONFIG_JSON = 'config.json'
RESULTS_JSON = 'results.json'
IMPORTED_JSON = 'imported.json'

# Every key of configs/common.base_config is classified for a resume, and
# tests/test_config_keys.py fails on one that is not. A new key goes into
# TRAINING_KEYS or FREE_KEYS and, because runs recorded before it lack it,
# into ADDED_KEYS with the value that reproduces them.

# A change is refused: training would compute something else.
TRAINING_KEYS = (
    'seed', 'task', 'num_epochs', 'total_steps', 'bn_cross_device',
    'ema_decay',
    'input.dataset', 'input.image_key', 'input.label_key', 'input.train_split',
    'input.eval_split', 'input.batch_size', 'input.shuffle_buffer',
    'input.crop_area_range', 'input.aspect_ratio_range', 'input.flip',
    'input.eval_crop_fraction', 'input.interpolation', 'input.antialias',
    'model.name', 'model.num_classes', 'model.dtype', 'model.convention',
    # Same convolutions in other forms: other rounding, so other weights.
    'model.conv_impl',
    'resizer.kind', 'resizer.in_size', 'resizer.out_size',
    'resizer.interpolation', 'resizer.antialias', 'resizer.num_filters',
    'resizer.num_res_blocks', 'resizer.num_layers', 'resizer.kernel_size',
    'resizer.stddev', 'resizer.avg_pool',
    'loss.label_smoothing', 'loss.emd_r',
    'optim.name', 'optim.learning_rate', 'optim.momentum', 'optim.nesterov',
    'optim.schedule', 'optim.decay_factor', 'optim.decay_epochs',
    'optim.warmup_epochs', 'optim.weight_decay', 'optim.grad_clip_norm',
    'optim.accumulate_steps', 'optim.resizer_lr_mult',
    'optim.backbone_lr_mult', 'optim.freeze',
)
# A change is allowed: where things are, how often the run reports, and
# what this launch does, not what training computes.
FREE_KEYS = (
    'name', 'eval_only', 'init_from.workdir', 'init_from.parts',
    'input.data_dir', 'input.manual_dir', 'input.make_manual_dir',
    'input.prepare', 'input.eval_batch_size', 'input.prefetch_batches',
    'input.cache_train', 'log_every_steps', 'eval_every_steps',
    'checkpoint_every_steps', 'keep_checkpoints', 'async_checkpoints',
    'image_summary_every_steps', 'profile_steps',
    # Recomputing instead of storing changes memory, not results.
    'model.remat',
)
# Keys added after runs were recorded: absent from a record means this
# value, which is what those runs computed with (before conventions, every
# backbone had torchvision's layout).
ADDED_KEYS = {'optim.accumulate_steps': 1, 'ema_decay': 0.0,
              'model.convention': 'torchvision'}

SIZE_KEYS = ('resizer.in_size', 'resizer.out_size')


class ConfigChangedError(ValueError):
  """A resume with a config that computes something else than the run's."""


def _flat(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
  """Dotted keys → JSON values (tuples as lists, as config.json has them)."""
  if isinstance(config, ml_collections.ConfigDict):
    config = json.loads(config.to_json_best_effort())
  flat = {}
  for key, value in config.items():
    if isinstance(value, dict) and value:
      flat.update({f'{key}.{k}': v for k, v in _flat(value).items()})
    else:
      flat[key] = value
  return flat


def config_changes(recorded: dict, config: ml_collections.ConfigDict
                   ) -> list[tuple[str, Any, Any]]:
  """(key, recorded value, new value) for every key outside FREE_KEYS that
  differs, is new or is gone."""
  old, new = {**ADDED_KEYS, **_flat(recorded)}, _flat(config)
  return [(k, old.get(k, '<absent>'), new.get(k, '<absent>'))
          for k in sorted(old.keys() | new.keys())
          if k not in FREE_KEYS and _comparable(k, old.get(k))
          != _comparable(k, new.get(k))]


def _comparable(key: str, value: Any) -> Any:
  """Sizes as (height, width), however they were written (448, [448, 448],
  '448x448')."""
  if key in SIZE_KEYS and value is not None:
    from resizer.models import composite  # pylint: disable=g-import-not-at-top
    try:
      return composite.as_size(value, key)
    except ValueError:
      pass
  return value


def check_resume(workdir: paths.PathLike, config: ml_collections.ConfigDict,
                 allow_changes: bool) -> list[tuple[str, Any, Any]]:
  """The changes from the recorded config; raises ConfigChangedError if
  there are any and they are not allowed. Writes nothing."""
  path = paths.resolve(workdir) / CONFIG_JSON
  if not path.exists():
    return []
  changes = config_changes(json.loads(path.read_text()), config)
  if changes and not allow_changes:
    lines = '\n'.join(f'  config.{k}: {old!r} (recorded) → {new!r} (now)'
                      for k, old, new in changes)
    raise ConfigChangedError(
        f'{path} records a run that this config would train differently:\n'
        f'{lines}\nResume with the recorded config, choose a new --workdir, '
        'or pass --allow_config_change to change it (the change is then '
        'recorded in config_changes.json). Nothing was written.')
  return changes


def write_config(workdir: paths.PathLike, config: ml_collections.ConfigDict,
                 changes: list[tuple[str, Any, Any]], step: int) -> None:
  """Records `config` (and, first, any allowed `changes` at `step`)."""
  root = paths.resolve(workdir)
  if changes:
    log_path = root / 'config_changes.json'
    log = json.loads(log_path.read_text()) if log_path.exists() else []
    log.append(dict(step=step, time=time.time(), changes=[
        dict(key=k, recorded=old, new=new) for k, old, new in changes]))
    paths.write_text_atomic(log_path, json.dumps(log, indent=2))
  paths.write_text_atomic(root / CONFIG_JSON,
                          config.to_json_best_effort(indent=2))


class Segments:
  """This launch's entry in `segments.json`, after the earlier launches'."""

  def __init__(self, workdir: paths.PathLike, start_step: int,
               num_devices: int, num_processes: int, write: bool = True):
    self.path = paths.resolve(workdir) / 'segments.json'
    self.write = write  # Only one process of a job writes.
    self.earlier = (json.loads(self.path.read_text())
                    if self.path.exists() else [])
    self.start_time = time.time()
    self.current = dict(start_step=start_step, end_step=start_step,
                        wall_time_sec=0.0, num_devices=num_devices,
                        num_processes=num_processes,
                        started=self.start_time)

  def update(self, step: int) -> None:
    """Records that this launch reached `step` (call where it checkpoints)."""
    self.current.update(end_step=step, wall_time_sec=round(
        time.time() - self.start_time, 1))
    if self.write:
      paths.write_text_atomic(self.path, json.dumps(self.all(), indent=2))

  def end(self, reason: str) -> None:
    """Records why this launch stopped early (e.g. 'process 1 (host H)
    failed: ...'); its end_step stays the last checkpoint's."""
    self.current.update(ended=reason, wall_time_sec=round(
        time.time() - self.start_time, 1))
    if self.write:
      paths.write_text_atomic(self.path, json.dumps(self.all(), indent=2))

  def all(self) -> list[dict[str, Any]]:
    return [*self.earlier, self.current]


class ResultsError(ValueError):
  """A run directory whose results.json cannot be read."""


def write_results(workdir: paths.PathLike, results: dict[str, Any]) -> None:
  """Writes results.json whole (or not at all)."""
  paths.write_text_atomic(paths.resolve(workdir) / RESULTS_JSON,
                          json.dumps(results, indent=2))


def load_results(workdir: paths.PathLike) -> dict[str, Any]:
  """results.json as a dict; ResultsError naming the file and what is wrong
  (missing, not JSON, not an object)."""
  path = paths.resolve(workdir) / RESULTS_JSON
  try:
    results = json.loads(path.read_text())
  except FileNotFoundError:
    raise ResultsError(f'{path}: missing (is the run finished?)') from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ResultsError(f'{path}: not valid JSON ({e})') from None
  if not isinstance(results, dict):
    raise ResultsError(f'{path}: expected a JSON object')
  return results


def read_results(workdir: paths.PathLike, move_aside: bool
                 ) -> dict[str, Any] | None:
  """results.json for the trainer, or None before training first finished.
  An unreadable one is named, moved aside (by the process given
  `move_aside`, one per job) and read as None: the run rebuilds it from its
  checkpoint and segments.json."""
  path = paths.resolve(workdir) / RESULTS_JSON
  if not path.exists():
    return None
  try:
    return load_results(workdir)
  except ResultsError as e:
    if not path.exists():  # Just moved aside by another process.
      return None
    stamp = time.strftime('%Y%m%d-%H%M%S')
    aside = path.parent / f'{RESULTS_JSON}.unreadable-{stamp}'
    logging.warning('%s; moving it to %s and rebuilding it.', e, aside)
    if move_aside:
      path.rename(aside)
    return None


# ------------------------------------------------- a run, or imported weights


def read_json(path: paths.PathLike) -> Any:
  """A JSON file (local or gs://)."""
  return json.loads(paths.resolve(path).read_text())


def read_config(workdir: paths.PathLike) -> ml_collections.ConfigDict:
  """The config a run recorded, with the keys added since it was recorded
  at the values that reproduce it (ADDED_KEYS)."""
  path = paths.resolve(workdir) / CONFIG_JSON
  if not path.exists():
    raise FileNotFoundError(f'{path} is missing: is {workdir} a run directory '
                            'written by resizer.main?')
  config = ml_collections.ConfigDict(read_json(path))
  for key, value in ADDED_KEYS.items():
    *blocks, leaf = key.split('.')
    node = config
    for block in blocks:
      node = node[block]
    if leaf not in node:
      node[leaf] = value
  return config


def load_run(workdir: paths.PathLike, ema: bool = False
             ) -> tuple[ml_collections.ConfigDict, dict, int]:
  """(config, {'params', 'batch_stats'}, step) of the latest checkpoint of a
  run written by resizer.main, on this process's first device; with `ema`,
  'params' are the run's EMA weights (config.ema_decay > 0)."""
  from resizer import checkpoints  # pylint: disable=g-import-not-at-top
  config = read_config(workdir)
  state = checkpoints.load(workdir)
  if ema and 'ema_params' not in state:
    raise ValueError(f'{workdir} kept no EMA weights (its config.ema_decay '
                     'is 0); export its own weights instead.')
  return config, {'params': state['ema_params' if ema else 'params'],
                  'batch_stats': state['batch_stats']}, int(state['step'])


def source_model(workdir: paths.PathLike) -> tuple[dict | None, dict | None]:
  """(config.model, imported.json) of a warm-start source: a run's workdir
  gives its config's model block and None; an import directory gives the
  imported model and its description. (None, None) when neither is there."""
  root = paths.resolve(workdir)
  if (root / IMPORTED_JSON).exists():
    description = read_json(root / IMPORTED_JSON)
    return description['model'], description
  if (root / CONFIG_JSON).exists():
    return read_config(root).model.to_dict(), None
  return None, None


def resolve_convention(config: ml_collections.ConfigDict,
                       recorded: paths.PathLike | None = None
                       ) -> tuple[dict | None, dict | None]:
  """Replaces `config.model.convention='from_weights'` (what the `weights=`
  config argument records) by the convention of the weights in
  `config.init_from.workdir`; returns that source's `source_model` (read
  once, here). A resumed run passes its workdir as `recorded`: if the
  source is gone, the convention the run recorded stands. ValueError naming
  the key when there is nothing to take it from."""
  workdir = config.init_from.workdir
  source = source_model(workdir) if workdir else (None, None)
  if config.model.convention != conventions.FROM_WEIGHTS:
    return source
  model = source[0]
  if model is None and recorded is not None:
    model = source_model(recorded)[0]
  if model is None:
    raise ValueError(
        f"config.model.convention='{conventions.FROM_WEIGHTS}' takes the "
        f'convention of config.init_from.workdir={workdir!r}, which has '
        f'neither {IMPORTED_JSON} (python -m resizer.import_weights) nor '
        f'{CONFIG_JSON} (a run).')
  config.model.convention = model['convention']
  return source

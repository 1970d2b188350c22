"""What a workdir records about its run, and the checks against it.

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
"""

import json
import time
from typing import Any

import flax
import jax
import ml_collections
from absl import logging

from resizer import paths
from resizer.models import composite

# Keys a resume may change freely: where things are, how often the run
# reports, and what this launch does (not what training computes).
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


SIZE_KEYS = ('resizer.in_size', 'resizer.out_size')
# Keys added after runs were recorded: absent from a record means this value.
ADDED_KEYS = {'optim.accumulate_steps': 1, 'ema_decay': 0.0}


class ConfigChangedError(ValueError):
  """A resume with a config that computes something else than the run's."""


def _flat(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
  """Dotted keys → JSON values (tuples as lists, as config.json has them)."""
  if isinstance(config, ml_collections.ConfigDict):
    config = json.loads(config.to_json_best_effort())
  return flax.traverse_util.flatten_dict(config, sep='.')


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
    try:
      return composite.as_size(value, key)
    except ValueError:
      pass
  return value


def check_resume(workdir: paths.PathLike, config: ml_collections.ConfigDict,
                 allow_changes: bool) -> list[tuple[str, Any, Any]]:
  """The changes from the recorded config; raises ConfigChangedError if
  there are any and they are not allowed. Writes nothing."""
  path = paths.resolve(workdir) / 'config.json'
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
  paths.write_text_atomic(root / 'config.json',
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


def write_results(workdir: paths.PathLike, results: dict[str, Any]) -> None:
  """Writes results.json whole (or not at all)."""
  paths.write_text_atomic(paths.resolve(workdir) / 'results.json',
                          json.dumps(results, indent=2))


def read_results(workdir: paths.PathLike) -> dict[str, Any] | None:
  """results.json, or None before training first finished. An unreadable
  one is named, moved aside (process 0) and read as None: the run rebuilds
  it from its checkpoint and segments.json."""
  path = paths.resolve(workdir) / 'results.json'
  try:
    return json.loads(path.read_text())
  except FileNotFoundError:  # (Or just moved aside by process 0.)
    return None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    aside = path.parent / f'results.json.unreadable-{time.strftime("%Y%m%d-%H%M%S")}'
    logging.warning('%s is not valid JSON (%s); moving it to %s and '
                    'rebuilding it.', path, e, aside)
    if jax.process_index() == 0:
      path.rename(aside)
    return None

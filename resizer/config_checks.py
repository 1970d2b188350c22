"""Checks of a config that span blocks or depend on the machine, before
anything is read or compiled; every error names the config key, its value
and what is allowed.

Each block's own fields are checked by what builds from it (`tasks.get_task`,
`composite.build_model`, `optim.check`); `train.build` runs those, then
`validate`.
"""

import ml_collections

from resizer import datasets, paths, run_record
from resizer.errors import ConfigError, require
from resizer.models import composite

TF_RESIZE_METHODS = ('bilinear', 'bicubic', 'nearest', 'area', 'lanczos3',
                     'lanczos5', 'gaussian', 'mitchellcubic')
REQUIRED_BLOCKS = ('input', 'model', 'resizer', 'optim', 'loss', 'init_from')


def _positive_int(config, key: str, allow_zero: bool = False) -> None:
  value = config[key] if '.' not in key else config[key.split('.')[0]][
      key.split('.')[1]]
  low = 0 if allow_zero else 1
  require(isinstance(value, int) and not isinstance(value, bool)
          and value >= low, f'config.{key}', value, f'an integer >= {low}')


def require_blocks(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first missing block of `config`."""
  for block in REQUIRED_BLOCKS:
    if block not in config:
      raise ConfigError(f'config.{block} is missing; every config needs the '
                        f'blocks {list(REQUIRED_BLOCKS)} (see configs/common.py).')


def validate(config: ml_collections.ConfigDict, num_devices: int,
             num_processes: int, resuming: bool = False,
             source: tuple[dict | None, dict | None] | None = None) -> None:
  """Raises ConfigError for the first bad value in `config` that no single
  builder can see. A `resuming` run ignores `init_from`, so its source is
  not checked (it may be gone). `source`: the warm-start source's
  `run_record.source_model`, if the caller has read it. The blocks are
  there: `train.build` runs `require_blocks` before its builders."""

  # jax.image.resize ignores antialias for 'nearest', and kind 'none'
  # resizes nothing: a flag that would change nothing is refused. (Checked
  # for new runs only: recorded configs from before still load.)
  resizer = config.resizer
  if resizer.antialias and (resizer.kind == 'none'
                            or resizer.interpolation == 'nearest'):
    raise ConfigError(
        f'config.resizer.antialias=True does nothing with config.resizer '
        f'(kind={resizer.kind!r})'
        + (" (the input pipeline resizes: set config.input.antialias, or "
           "use the argument antialias=true, which does)."
           if resizer.kind == 'none' else " and interpolation='nearest'."))

  inp = config.input
  for key in ('batch_size', 'eval_batch_size'):
    _positive_int(config, f'input.{key}')
    require(inp[key] % num_devices == 0 and inp[key] % num_processes == 0,
            f'config.input.{key}', inp[key],
            f'a multiple of the device count ({num_devices}) and of the '
            f'process count ({num_processes})')
  for key in ('crop_area_range', 'aspect_ratio_range'):
    lo, hi = inp[key]
    require(0 < lo <= hi and (key != 'crop_area_range' or hi <= 1),
            f'config.input.{key}', tuple(inp[key]),
            '0 < low <= high (<= 1 for areas)')
  require(0 < inp.eval_crop_fraction <= 1,
          'config.input.eval_crop_fraction', inp.eval_crop_fraction,
          'a fraction in (0, 1]')
  require(inp.interpolation in TF_RESIZE_METHODS,
          'config.input.interpolation', inp.interpolation,
          f'one of {list(TF_RESIZE_METHODS)}')
  maker = inp.make_manual_dir
  require(maker in ('', *datasets.MANUAL_DIR_MAKERS),
          'config.input.make_manual_dir', maker,
          f"'' or one of {list(datasets.MANUAL_DIR_MAKERS)}")

  accumulate = config.optim.accumulate_steps
  require(inp.batch_size % (num_devices * accumulate) == 0,
          'config.optim.accumulate_steps', accumulate,
          f'a divisor of input.batch_size ({inp.batch_size}) / the device '
          f'count ({num_devices})')

  ema_decay = config.ema_decay
  require(0 <= ema_decay < 1, 'config.ema_decay', ema_decay,
          'a number in [0, 1) (0: no EMA)')
  _positive_int(config, 'total_steps', allow_zero=True)
  require(config.total_steps > 0 or config.num_epochs > 0,
          'config.num_epochs', config.num_epochs,
          'a positive number when total_steps is 0')
  for key in ('log_every_steps', 'eval_every_steps', 'checkpoint_every_steps',
              'keep_checkpoints'):
    _positive_int(config, key)
  for key in ('image_summary_every_steps', 'profile_steps'):
    _positive_int(config, key, allow_zero=True)
  parts = ('all', *composite.PARTS)
  require(config.init_from.parts in parts, 'config.init_from.parts',
          config.init_from.parts, f'one of {list(parts)}')
  if config.init_from.workdir and not resuming:
    _validate_warm_start_source(config, source)


def _validate_warm_start_source(config: ml_collections.ConfigDict,
                                source: tuple[dict | None, dict | None] | None
                                ) -> None:
  """The backbone being warm-started is the one the source holds, in the same
  convention (shapes alone cannot tell Keras' ResNet-50 from torchvision's)."""
  workdir, parts = config.init_from.workdir, config.init_from.parts
  if not paths.resolve(workdir).is_dir():
    raise ConfigError(f'config.init_from.workdir={workdir!r} does not exist.')
  model, imported = source or run_record.source_model(workdir)
  if imported is not None and parts != 'backbone':
    raise ConfigError(
        f'config.init_from.parts={parts!r} is invalid; {workdir} holds '
        f"imported {model['name']} weights only: expected 'backbone'.")
  if model is None or parts == 'resizer':
    return
  source = (f"the weights imported from {imported['source']}" if imported
            else f'the run in {workdir}')
  for key in ('name', 'convention'):
    ours, theirs = config.model[key], model[key]
    if ours != theirs:
      raise ConfigError(
          f'config.model.{key}={ours!r} does not match {source} '
          f'(config.init_from.workdir), whose model has {key} {theirs!r}.')


def validate_against_data(config: ml_collections.ConfigDict, info) -> None:
  """Checks that need the dataset's metadata (but not its records)."""
  if info.num_classes is not None and config.task == 'classification':
    require(config.model.num_classes == info.num_classes,
            'config.model.num_classes', config.model.num_classes,
            f'{info.num_classes}, the class count of {config.input.dataset}')
  if config.task == 'iqa':
    require(len(info.label_shape) == 1,
            'config.input.label_key', config.input.label_key,
            'a feature holding one rating distribution per example')
    require(config.model.num_classes == info.label_shape[0],
            'config.model.num_classes', config.model.num_classes,
            f'{info.label_shape[0]}, the rating bins of '
            f'{config.input.label_key}')

"""Shared defaults for every experiment config (plain data: no imports from resizer/).

Each experiment file builds on `base_config()` and `resizer_config()`, and
parses its command-line argument (`--config=configs/x.py:resizer=bicubic,res=368`)
with `parse_arg`.
"""

import re

import ml_collections
from ml_collections.config_dict import FieldReference

# `resizer=` argument values → (kind, interpolation).
RESIZER_CHOICES = {
    'learned': ('learned', 'bilinear'),
    'bilinear': ('fixed', 'bilinear'),
    'bicubic': ('fixed', 'bicubic'),
    'lanczos3': ('fixed', 'lanczos3'),
    'nearest': ('fixed', 'nearest'),
    'muller': ('muller', 'bilinear'),
    'none': ('none', 'bilinear'),
}


# Arguments that are image sizes: N (square) or HxW.
SIZE_ARGS = ('res', 'out')


def size_arg(key: str, value: str) -> int | tuple[int, int]:
  """'448' → 448, '448x336' → (448, 336) (height x width)."""
  match = re.fullmatch(r'(\d+)(?:x(\d+))?', value)
  if not match:
    raise ValueError(f'config argument {key}={value!r} must be a size: N '
                     '(square) or HxW (height x width), e.g. 448 or 448x336.')
  h, w = match.groups()
  return int(h) if w is None else (int(h), int(w))


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses 'key=value,key=value' into a ConfigDict over `defaults`.

  Values are converted to the type of the default; SIZE_ARGS also take HxW.
  Unknown keys fail with the list of known ones.
  """
  parsed = ml_collections.ConfigDict(
      {k: FieldReference(v, field_type=object) if k in SIZE_ARGS else v
       for k, v in defaults.items()})
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    if not sep or key not in defaults:
      raise ValueError(f'config argument {item!r} is invalid; expected '
                       f'key=value with key one of {sorted(defaults)}.')
    default = defaults[key]
    if key in SIZE_ARGS:
      parsed[key] = size_arg(key, value)
    elif isinstance(default, bool):
      if value.lower() not in ('true', 'false', '1', '0'):
        raise ValueError(f'config argument {key}={value!r} must be true/false.')
      parsed[key] = value.lower() in ('true', '1')
    else:
      try:
        parsed[key] = type(default)(value)
      except ValueError:
        raise ValueError(f'config argument {key}={value!r} must be of type '
                         f'{type(default).__name__}.') from None
  return parsed


Size = int | tuple[int, int]


def resizer_config(choice: str, in_size: Size, out_size: Size,
                   antialias: bool = False) -> ml_collections.ConfigDict:
  """The `config.resizer` block for a `resizer=` choice.

  'none' means the input pipeline resizes straight to `out_size` (its
  in_size is set to out_size); every other choice receives `in_size` images
  and resizes them on the accelerator. Sizes are an int (square) or a
  (height, width) pair; on the command line also 'HxW'
  (`--config.resizer.in_size=448x336`), which the fields accept because
  they are typed `object`.
  """
  if choice not in RESIZER_CHOICES:
    raise ValueError(f'config argument resizer={choice!r} is invalid; expected '
                     f'one of {sorted(RESIZER_CHOICES)}.')
  kind, interpolation = RESIZER_CHOICES[choice]
  return ml_collections.ConfigDict(dict(
      kind=kind,
      in_size=FieldReference(out_size if kind == 'none' else in_size,
                             field_type=object),
      out_size=FieldReference(out_size, field_type=object),
      interpolation=interpolation,
      antialias=antialias,       # jax.image.resize's default is True; TF's is False.
      num_filters=16,            # learned: n
      num_res_blocks=1,          # learned: r
      num_layers=2,              # muller
      kernel_size=5,             # muller
      stddev=1.0,                # muller
      avg_pool=False,            # muller
  ))


def set_resizer(config: ml_collections.ConfigDict, choice: str,
                in_size: Size, out_size: Size, antialias: bool = False,
                remat: bool = False) -> None:
  """Sets `config.resizer` for a `resizer=` choice (see resizer_config).

  With 'none' the input pipeline does the only resize, so `antialias`
  becomes the pipeline's (config.input.antialias). With `remat`, a resizer
  with activations at its input resolution (learned, MULLER: 16-channel
  448x448 tensors at the paper's 448→224) is recomputed in the backward
  pass instead of stored (config.model.remat)."""
  config.resizer = resizer_config(choice, in_size, out_size, antialias)
  if config.resizer.kind == 'none':
    config.resizer.antialias = False
    config.input.antialias = antialias
  if remat and config.resizer.kind in ('learned', 'muller'):
    config.model.remat = 'resizer'


def base_config() -> ml_collections.ConfigDict:
  """Defaults every experiment starts from: the paper's ImageNet recipe."""
  config = ml_collections.ConfigDict()
  config.name = ''                 # set by resizer.main to the config file
  config.seed = 0
  config.task = 'classification'

  config.input = ml_collections.ConfigDict(dict(
      dataset='imagenet2012',
      data_dir=ml_collections.config_dict.placeholder(str),  # default: TFDS_DATA_DIR or ~/tensorflow_datasets
      prepare=False,                   # True: download_and_prepare on first use
      manual_dir=ml_collections.config_dict.placeholder(str),  # TFDS manual data
      make_manual_dir='',              # 'iqa_demo': generate manual_dir if missing
      image_key='image',
      label_key='label',
      train_split='train',
      eval_split='validation',
      batch_size=256,                  # global, over all devices and hosts
      eval_batch_size=256,
      shuffle_buffer=16_384,
      cache_train=False,               # cache the (encoded) records in memory
      crop_area_range=(0.08, 1.0),     # random resized crop at resizer.in_size
      aspect_ratio_range=(3 / 4, 4 / 3),
      flip=True,
      eval_crop_fraction=0.875,        # center crop of the shorter side
      interpolation='bilinear',        # the pipeline's own resize to in_size
      antialias=False,
      prefetch_batches=2,
  ))
  config.model = ml_collections.ConfigDict(dict(
      name='densenet121', num_classes=1000, dtype='bfloat16',
      # 'keras' for weights imported from Keras applications (see
      # resizer/models/conventions.py and resizer/import_weights.py);
      # 'from_weights' (set by the weights= argument): theirs.
      convention='torchvision',
      # 'resizer': recompute the resizer in the backward pass instead of
      # storing its input-resolution activations (see composite.REMAT).
      remat='none',
      # 'cpu_forms': convolutions in forms XLA:CPU runs faster, for runs on
      # CPU only (see resizer/models/common.py, CONV_IMPLS).
      conv_impl='lax'))
  config.resizer = resizer_config('learned', 448, 224)

  config.loss = ml_collections.ConfigDict(dict(
      label_smoothing=0.1,   # classification
      emd_r=2.0,             # iqa: the r of the normalised EMD
  ))
  config.optim = ml_collections.ConfigDict(dict(
      name='sgd',                  # 'sgd' (momentum) | 'adam' | 'adamw'
      learning_rate=0.05,          # the paper: 0.05 from scratch, 0.005 fine-tuning
      momentum=0.9,
      nesterov=False,
      schedule='step',             # 'step' (×decay_factor every decay_epochs) | 'cosine' | 'constant'
      decay_factor=0.94,
      decay_epochs=2.0,
      warmup_epochs=0.0,
      weight_decay=4e-5,           # on kernels only; L2 added to gradients (decoupled for adamw)
      grad_clip_norm=0.0,          # 0: no clipping
      accumulate_steps=1,          # > 1: each step's batch as that many micro-batches
      resizer_lr_mult=1.0,
      backbone_lr_mult=1.0,
      freeze='',                   # '' | 'resizer' | 'backbone'
  ))
  config.num_epochs = 90.0
  config.total_steps = 0           # > 0 overrides num_epochs
  config.bn_cross_device = True    # False: per-device BatchNorm statistics
  # > 0 (e.g. 0.9999): also keep an exponential moving average of the
  # weights, checkpointed and evaluated beside them (eval_ema/ in TensorBoard
  # and results.json); python -m resizer.export --ema exports it.
  config.ema_decay = 0.0

  config.log_every_steps = 100
  config.eval_every_steps = 5_000  # and always at the end
  config.checkpoint_every_steps = 2_000
  config.keep_checkpoints = 3
  config.async_checkpoints = True  # write checkpoints while training goes on
  config.image_summary_every_steps = 5_000   # 0 disables
  config.profile_steps = 0                   # > 0: profile that many steps once
  config.eval_only = False

  config.init_from = ml_collections.ConfigDict(dict(
      workdir='',      # another run's workdir to warm-start from
      parts='all',     # 'all' | 'backbone' | 'resizer'
  ))
  return config


def init_backbone_from(config: ml_collections.ConfigDict, weights: str
                       ) -> None:
  """The `weights=` argument: warm-start the backbone from `weights`.

  `weights` is a directory written by `python -m resizer.import_weights`
  (Keras or torchvision ImageNet weights) or another run's workdir. The
  config only records it: the backbone's convention is 'from_weights', which
  the trainer (and the other tools that build a model) replace by the one in
  `weights`' imported.json or config.json, read once, before anything is
  compiled. A head whose class count differs is re-initialised. An empty
  `weights` changes nothing.
  """
  if not weights:
    return
  config.init_from.update(workdir=weights, parts='backbone')
  config.model.convention = 'from_weights'


def imagenet_config(arg: str | None, backbone: str,
                    default_res: int = 448) -> ml_collections.ConfigDict:
  """The paper's ImageNet setting for `backbone`, with `resizer=` and `res=`
  (resizer input), `out=` (backbone input), `antialias=` and `weights=`
  (see `init_backbone_from`) arguments."""
  arg = parse_arg(arg, resizer='learned', res=default_res, out=224,
                  antialias=False, weights='')
  config = base_config()
  config.model.name = backbone
  set_resizer(config, arg.resizer, arg.res, arg.out, arg.antialias,
              remat=True)
  init_backbone_from(config, arg.weights)
  return config


def ava_config(arg: str | None, backbone: str) -> ml_collections.ConfigDict:
  """The paper's AVA setting for `backbone`: 10 rating bins, EMD loss (r=2),
  learned resizer (or `resizer=bicubic`, the baseline), `res=`/`out=`."""
  arg = parse_arg(arg, resizer='learned', res=448, out=224, antialias=False,
                  split='random_split', weights='')
  config = base_config()
  config.task = 'iqa'
  config.input.update(
      dataset=f'ava/{arg.split}', train_split='train', eval_split='test',
      label_key='rating_distribution', batch_size=128, eval_batch_size=128,
      # Mild crops: a tight crop changes what raters judged.
      crop_area_range=(0.6, 1.0), eval_crop_fraction=1.0)
  config.model.update(name=backbone, num_classes=10)
  set_resizer(config, arg.resizer, arg.res, arg.out, arg.antialias,
              remat=True)
  # Fine-tuning from ImageNet weights (config.init_from), as NIMA and the
  # paper do: the 'fine-tuning' learning rate of the classification recipe.
  config.optim.update(learning_rate=0.005, weight_decay=4e-5)
  config.loss.label_smoothing = 0.0
  config.num_epochs = 20.0
  config.update(eval_every_steps=2_000, checkpoint_every_steps=2_000,
                image_summary_every_steps=2_000)
  init_backbone_from(config, arg.weights)
  return config

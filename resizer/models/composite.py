"""The model the trainer trains: a resizer, then a backbone; built from a config.

`build_model(config)` reads two config blocks (any mapping; an
`ml_collections.ConfigDict` in practice):

  config.resizer: kind ('learned' | 'fixed' | 'muller' | 'none'), in_size,
      out_size, interpolation, antialias, and per kind num_filters,
      num_res_blocks (learned), num_layers, kernel_size, stddev, avg_pool
      (muller).
  config.model: name (a key of BACKBONES), num_classes, dtype ('float32' |
      'bfloat16'), convention ('torchvision' | 'keras', see
      conventions.py), remat (one of REMAT), conv_impl (a key of
      common.CONV_IMPLS).

Every field is required: configs/common.py holds the defaults.

Sizes are an int (square) or a (height, width) pair.
"""

import dataclasses
import re
from typing import Any, Mapping, NamedTuple, Sequence

import flax.linen as nn
import jax.numpy as jnp

from resizer.models import (conventions, densenet, efficientnet, inception,
                            mobilenet, resnet)
from resizer.models.common import CONV_IMPLS, Dtype, ModuleDef
from resizer.models.resizers import (FixedResizer, IdentityResizer,
                                     LearnedResizer, MullerResizer, ResizeFn,
                                     resize)


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A registered backbone: its module, and where foreign weights for it
  come from (None: it cannot be warm-started from torchvision or Keras)."""
  module: ModuleDef
  weights: conventions.ForeignWeights | None = None
  keras_application: str | None = None  # The same net in keras.applications.


BACKBONES: dict[str, Backbone] = {
    'resnet18': Backbone(resnet.ResNet18),
    'resnet50': Backbone(resnet.ResNet50, resnet.WEIGHTS, 'ResNet50'),
    'densenet121': Backbone(densenet.DenseNet121, densenet.WEIGHTS,
                            'DenseNet121'),
    'mobilenet_v2': Backbone(mobilenet.MobileNetV2, mobilenet.WEIGHTS,
                             'MobileNetV2'),
    'inception_v2': Backbone(inception.InceptionV2),
    'efficientnet_b0': Backbone(efficientnet.EfficientNetB0,
                                efficientnet.WEIGHTS, 'EfficientNetB0'),
    # Demo- and test-sized variants: seconds to compile on a CPU. Those with
    # weights exercise the importer without downloading anything.
    'resnet_demo': Backbone(resnet.ResNetDemo),
    'resnet_demo_wide': Backbone(resnet.ResNetDemoWide),
    'resnet_tiny': Backbone(resnet.ResNetTiny),
    'densenet_tiny': Backbone(densenet.DenseNetTiny, densenet.WEIGHTS),
    'mobilenet_v2_tiny': Backbone(mobilenet.MobileNetV2Tiny, mobilenet.WEIGHTS),
    'efficientnet_tiny': Backbone(efficientnet.EfficientNetTiny,
                                  efficientnet.WEIGHTS),
}


def with_weights() -> list[str]:
  """The backbones foreign (torchvision or Keras) weights can be imported
  into, in name order."""
  return sorted(n for n, b in BACKBONES.items() if b.weights)


RESIZER_KINDS = ('learned', 'fixed', 'muller', 'none')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

# `config.model.remat`: which activations the train step stores for the
# backward pass. 'none' stores every one. 'resizer' stores only the
# resizer's input and output and recomputes the resizer in the backward
# pass: its activations at the input resolution (16 channels at 448x448)
# then exist only after the backbone's own have been freed.
REMAT = ('none', 'resizer')

# ImageNet statistics of images scaled to [0, 1].
IMAGENET_MEAN, IMAGENET_STD = conventions.NORMALIZATIONS['imagenet']


# The two parts of every model, as its submodules and parameter trees are
# named: what optim.freeze, the *_lr_mult and init_from.parts refer to.
PARTS = ('resizer', 'backbone')


class ResizerBackbone(nn.Module):
  """Images → resizer → normalisation → backbone → float32 logits.

  Takes uint8 images (scaled by 1/255) or float images in [0, 1]; the
  resizer works in that [0, 1] range, so its output can be shown as an
  image. The resized batch is sown as `intermediates/resized`; `resize`
  returns it directly.
  """
  resizer: nn.Module
  backbone: nn.Module
  dtype: Dtype = jnp.float32
  mean: Sequence[float] = IMAGENET_MEAN
  std: Sequence[float] = IMAGENET_STD

  def resize(self, images, train: bool = False):
    """The resizer's output for `images`, in the [0, 1] value range."""
    # Positional: a rematerialised resizer takes `train` as a static
    # argument, which lifted transforms accept only by position.
    return self.resizer(_unit_range(images, self.dtype), train)

  def naive_resize(self, images):
    """The fixed resize the resizer starts from (what a learned resizer
    adds its residual to), in float32 and the [0, 1] value range."""
    return self.resizer.naive(_unit_range(images, jnp.float32))

  def __call__(self, images, train: bool = True):
    resized = self.resize(images, train=train)
    self.sow('intermediates', 'resized', resized)
    mean = jnp.asarray(self.mean, self.dtype)
    std = jnp.asarray(self.std, self.dtype)
    logits = self.backbone((resized - mean) / std, train=train)
    return logits.astype(jnp.float32)


def _unit_range(images, dtype: Dtype):
  """uint8 images scaled by 1/255, or float images in [0, 1], as `dtype`."""
  if images.dtype == jnp.uint8:
    images = images.astype(dtype) / 255
  return images.astype(dtype)


def as_size(value: Any, key: str) -> tuple[int, int]:
  """A size from a config as a (height, width) tuple: an int (square), a
  (height, width) pair, or their command-line text ('448', '448x336');
  names `key` if bad."""
  if isinstance(value, str) and re.fullmatch(r'\d+(x\d+)?', value):
    value = tuple(int(v) for v in value.split('x'))
    value = value[0] if len(value) == 1 else value
  pair = (value, value) if isinstance(value, int) else value
  if (isinstance(pair, Sequence) and not isinstance(pair, str)
      and len(pair) == 2
      and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
              for v in pair)):
    return tuple(pair)
  raise ValueError(f'{key}={value!r} is invalid; expected a positive integer, '
                   'a (height, width) pair of positive integers, or HxW.')


class Sizes(NamedTuple):
  """A `config.resizer` block's sizes, as (height, width) pairs."""
  input: tuple[int, int]   # What the input pipeline gives the resizer.
  output: tuple[int, int]  # What the resizer gives the backbone.


def sizes(resizer_cfg: Mapping) -> Sizes:
  """The sizes of a `config.resizer` block, parsed by `as_size` (whose error
  names the key)."""
  return Sizes(as_size(resizer_cfg.get('in_size'), 'config.resizer.in_size'),
               as_size(resizer_cfg.get('out_size'), 'config.resizer.out_size'))


def _with_key(prefix: str, fn, **kwargs):
  """Builds a module, prefixing a construction error with the config block."""
  try:
    return fn(**kwargs)
  except (ValueError, TypeError) as e:
    raise ValueError(f'{prefix}: {e}') from e


def build_resizer(cfg: Mapping, dtype: Dtype = jnp.float32,
                  bn_axis_name: str | None = None, remat: bool = False,
                  conv: ModuleDef = nn.Conv, resize_fn: ResizeFn = resize
                  ) -> nn.Module:
  """The resizer described by a `config.resizer` block; with `remat`, one
  that recomputes its activations in the backward pass instead of storing
  them (same parameters, outputs and gradients). `conv` builds the learned
  resizer's convolutions (common.CONV_IMPLS); `resize_fn` does every fixed
  resize (resizers.ResizeFn; the benchmarks swap in `reference_resize`)."""
  kind = cfg.get('kind')
  if kind not in RESIZER_KINDS:
    raise ValueError(f'config.resizer.kind={kind!r} is invalid; expected one '
                     f'of {list(RESIZER_KINDS)}.')
  in_size, out_size = sizes(cfg)
  prefix = f'config.resizer (kind={kind!r})'
  common = dict(out_size=out_size,
                interpolation=cfg['interpolation'],
                antialias=cfg['antialias'], resize_fn=resize_fn)
  if kind == 'none':
    if in_size != out_size:
      raise ValueError(
          f"config.resizer.in_size={in_size} must equal config.resizer.out_size"
          f"={out_size} with kind 'none' (the input pipeline does the resizing).")
    return _with_key(prefix, IdentityResizer, out_size=out_size)
  if kind == 'fixed':
    return _with_key(prefix, FixedResizer, **common)
  def maybe_remat(cls):
    # static_argnums counts the module: 1 is the images, 2 is `train`.
    return nn.remat(cls, static_argnums=(2,)) if remat else cls

  if kind == 'muller':
    return _with_key(prefix, maybe_remat(MullerResizer), **common, dtype=dtype,
                     num_layers=cfg['num_layers'],
                     kernel_size=cfg['kernel_size'], stddev=cfg['stddev'],
                     avg_pool=cfg['avg_pool'])
  return _with_key(prefix, maybe_remat(LearnedResizer), **common, dtype=dtype,
                   bn_axis_name=bn_axis_name, conv=conv,
                   num_filters=cfg['num_filters'],
                   num_res_blocks=cfg['num_res_blocks'])


def _named(model_cfg: Mapping, key: str, choices: Mapping,
           expected: str | None = None):
  """`choices[config.model.<key>]`; a bad name fails naming key and choices."""
  name = model_cfg[key]
  if name not in choices:
    raise ValueError(f'config.model.{key}={name!r} is invalid; expected '
                     f'{expected or f"one of {list(choices)}"}.')
  return choices[name]


def compute_dtype(model_cfg: Mapping) -> Dtype:
  """The jnp dtype named by `config.model.dtype`."""
  # float16's narrow exponent range underflows small gradients to zero
  # unless the loss is scaled, which this trainer does not do.
  return _named(model_cfg, 'dtype', DTYPES, expected=(
      "'bfloat16' (float32's exponent range at float16's memory; float16 "
      "would need loss scaling, which this trainer does not do) or "
      "'float32'"))


def convention(cfg: Mapping) -> conventions.Convention:
  """The weight convention named by a `config.model` block."""
  name = cfg.get('name')
  convention = cfg['convention']
  if convention == 'torchvision':
    return conventions.Convention()
  if convention == conventions.FROM_WEIGHTS:
    raise ValueError(
        f'config.model.convention={convention!r} is unresolved: '
        'run_record.resolve_convention(config) replaces it by that of the '
        'weights in config.init_from.workdir before a model is built.')
  if convention != 'keras':
    raise ValueError(f'config.model.convention={convention!r} is invalid; '
                     f'expected one of {list(conventions.CONVENTIONS)}.')
  if name not in with_weights():
    raise ValueError(f"config.model.convention='keras' is not available for "
                     f'config.model.name={name!r}; it is for {with_weights()}.')
  return BACKBONES[name].weights.keras


def conv_impl(cfg: Mapping) -> ModuleDef:
  """The convolution module named by `config.model.conv_impl`."""
  return _named(cfg, 'conv_impl', CONV_IMPLS)


def build_backbone(cfg: Mapping, bn_axis_name: str | None = None) -> nn.Module:
  """The backbone described by a `config.model` block."""
  name = cfg.get('name')
  if name not in BACKBONES:
    raise ValueError(f'config.model.name={name!r} is invalid; expected one of '
                     f'{sorted(BACKBONES)}.')
  num_classes = cfg.get('num_classes')
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f'config.model.num_classes={num_classes!r} is invalid; '
                     'expected an integer >= 1.')
  return BACKBONES[name].module(
      num_classes=num_classes, dtype=compute_dtype(cfg),
      bn_axis_name=bn_axis_name, conv=conv_impl(cfg),
      **convention(cfg).backbone_kwargs)


def build_model(config: Mapping, bn_axis_name: str | None = None,
                resize_fn: ResizeFn = resize) -> ResizerBackbone:
  """The resizer → backbone model of a config with `resizer` and `model` blocks.

  `bn_axis_name` is the mesh axis over which BatchNorm statistics are
  averaged; only valid inside a `shard_map` over that axis. `resize_fn`: see
  `build_resizer`.
  """
  dtype = compute_dtype(config['model'])
  remat = config['model']['remat']
  if remat not in REMAT:
    raise ValueError(f'config.model.remat={remat!r} is invalid; expected one '
                     f'of {list(REMAT)}.')
  backbone = build_backbone(config['model'], bn_axis_name)
  mean, std = conventions.NORMALIZATIONS[
      convention(config['model']).normalization]
  return ResizerBackbone(
      resizer=build_resizer(config['resizer'], dtype, bn_axis_name,
                            remat=remat == 'resizer',
                            conv=conv_impl(config['model']),
                            resize_fn=resize_fn),
      backbone=backbone, dtype=dtype, mean=mean, std=std)

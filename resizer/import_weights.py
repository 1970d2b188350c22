r"""Imports ImageNet weights from Keras applications or torchvision into a
checkpoint that `config.init_from` can warm-start from.

  python -m resizer.import_weights --model=densenet121 \
      --source=densenet121-a639ec97.pth --out=weights/densenet121_torch

  python -m resizer.import_weights --model=resnet50 \
      --source=~/.keras/models/resnet50_weights_tf_dim_ordering_tf_kernels.h5 \
      --out=weights/resnet50_keras

Sources:
  * torchvision state dicts (`.pth` / `.pt`), read with
    `torch.load(weights_only=True)`, so no pickled code runs; training
    checkpoints holding the state dict under 'state_dict' or 'model' work too.
  * Keras applications weights (`.h5` as Keras downloads them, or Keras 3
    `.weights.h5`), read by loading them into the matching
    `keras.applications` model.

`--out` receives `checkpoints/0/` (params and BatchNorm statistics under
'backbone', as a run's checkpoints hold them) and `imported.json`, which
names the backbone, its class count and its convention. Keras weights need
`config.model.convention='keras'` (see resizer/models/conventions.py), which
the trainer checks before compiling anything:

  python -m resizer.main --config=configs/imagenet_resnet50.py \
      --config.model.convention=keras \
      --config.init_from.workdir=weights/resnet50_keras \
      --config.init_from.parts=backbone --workdir=runs/r50

Layouts: torch kernels (O, I, H, W) become (H, W, I, O); Keras depthwise
kernels (H, W, C, 1) become (H, W, 1, C); torch linear weights are
transposed. Keras' ResNet50 convolutions carry biases, which BatchNorm
cancels in training; they are folded into the moving means, exactly. Its
caffe preprocessing feeds BGR, so the stem kernel's input channels are
reversed and the model takes RGB like every other.
"""

import hashlib
import json
import re
import warnings
from typing import Iterator, Mapping

from absl import flags
import numpy as np

from configs import common
from resizer import cli, paths, run_record
from resizer.models import conventions

# JAX, flax and the model zoo are imported where they are used, so that
# --help answers without loading them.

FORMATS = ('torch', 'keras')

Tensors = conventions.Tensors
WeightsMismatch = conventions.WeightsMismatch


def keras_importable() -> list[str]:
  """The backbones whose Keras applications weights can be imported."""
  from resizer.models import composite  # pylint: disable=g-import-not-at-top
  return sorted(n for n, b in composite.BACKBONES.items()
                if b.keras_application)


# ---------------------------------------------------------------- reading


def source_format(path: str) -> str:
  """'keras' for .h5 files, 'torch' for .pth/.pt/.bin; else a ValueError."""
  if path.endswith('.h5'):
    return 'keras'
  if path.endswith(('.pth', '.pt', '.bin')):
    return 'torch'
  raise ValueError(f'--source={path!r}: cannot tell the format from the '
                   'extension; expected .h5 / .weights.h5 (Keras) or .pth / '
                   '.pt (torchvision).')


def read_torch(path: str) -> Tensors:
  """A torchvision state dict as numpy arrays, without running pickled code."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ModuleNotFoundError as e:
    raise ModuleNotFoundError(
        f'Reading {path} needs PyTorch: pip install torch') from e
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # torch raises several types for bad files.
    # torch's own text may advise weights_only=False, which runs whatever
    # code the file holds: only its first line, and only without that.
    first = str(e).strip().splitlines()[0] if str(e).strip() else ''
    detail = '' if 'weights_only' in first or not first else f': {first}'
    raise WeightsMismatch(
        f'{path}: not a torch state dict of tensors ({type(e).__name__}'
        f'{detail}). This tool reads tensors only and never runs pickled '
        'code; save the weights with torch.save(model.state_dict(), PATH).'
    ) from None
  for key in ('state_dict', 'model'):
    if isinstance(state, dict) and isinstance(state.get(key), dict):
      state = state[key]
  if not isinstance(state, dict):
    raise WeightsMismatch(f'{path}: holds a {type(state).__name__}, not a '
                          'state dict of tensors.')
  tensors = {}
  for name, value in state.items():
    name = name.removeprefix('module.')  # DataParallel checkpoints.
    # torchvision's DenseNet files predate its key names: 'norm.1' is 'norm1'.
    name = re.sub(r'(denselayer\d+\.(?:norm|relu|conv))\.([12])\.', r'\1\2.',
                  name)
    if name.endswith('num_batches_tracked'):
      continue
    if not isinstance(value, torch.Tensor):
      raise WeightsMismatch(f'{path}: entry {name!r} is a '
                            f'{type(value).__name__}, not a tensor.')
    tensors[name] = value.detach().cpu().float().numpy()
  return tensors


def read_keras(path: str, model: str) -> Tensors:
  """Keras applications weights as {'layer/weight': array}, read by loading
  them into the matching Keras model (built with the file's class count)."""
  from resizer.models import composite  # pylint: disable=g-import-not-at-top
  keras_model = composite.BACKBONES[model].keras_application
  if not keras_model:
    raise ValueError(f'--model={model!r}: Keras weights can be imported for '
                     f'{keras_importable()}.')
  import h5py  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  shapes = {}
  try:
    with h5py.File(path, 'r') as f:
      f.visititems(lambda name, obj: shapes.__setitem__(name, obj.shape)
                   if isinstance(obj, h5py.Dataset) else None)
  except OSError as e:
    raise WeightsMismatch(f'{path}: not a readable HDF5 file: {e}') from e
  matrices = [(name, shape) for name, shape in shapes.items()
              if len(shape) == 2]
  if len(matrices) != 1:
    raise WeightsMismatch(
        f'{path}: expected exactly one classifier matrix (the "predictions" '
        f'layer), found {matrices or "none"}; files without the top '
        '(include_top=False, "notop") cannot be imported.')
  num_classes = matrices[0][1][1]
  net = getattr(keras.applications, keras_model)(
      weights=None, classes=num_classes, classifier_activation=None)
  if len(shapes) != len(net.weights):
    raise WeightsMismatch(f'{path}: holds {len(shapes)} tensors, but Keras '
                          f'{keras_model} has {len(net.weights)}.')
  # Keras 3 skips parts of a file it cannot place with only a warning; a
  # half-loaded model must not pass for an imported one.
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    try:
      net.load_weights(path)
    except Exception as e:  # Keras raises several types for mismatches.
      raise WeightsMismatch(
          f'{path}: does not load into Keras {keras_model}: {e}') from e
  tensors = {}
  for layer in net.layers:
    # Keras numbers auto-named layers per session ('normalization_1').
    name = ('normalization' if isinstance(layer, keras.layers.Normalization)
            else layer.name)
    for w in layer.weights:
      tensors[f'{name}/{w.name}'] = np.asarray(w.numpy(), np.float32)
  return tensors


# ------------------------------------------------ our modules → source names


def layout(params) -> conventions.Layout:
  """Block order and which blocks expand, read off our parameter tree: what
  a family's `torch_name` / `keras_name` may need besides a module's path."""
  blocks = sorted((k for k in params if k.startswith('stage')),
                  key=conventions.block_index)
  return dict(order={b: i for i, b in enumerate(blocks)},
              num_blocks=len(blocks),
              num_stages=len({conventions.block_index(b)[0] for b in blocks}),
              expanding={b for b in blocks if 'conv_expand' in params[b]})


# --------------------------------------------------------------- conversion

# (our leaf, torch suffix, Keras suffix): BatchNorm, then convolutions and
# dense layers alike.
_BN = (('scale', 'weight', 'gamma'), ('bias', 'bias', 'beta'),
       ('mean', 'running_mean', 'moving_mean'),
       ('var', 'running_var', 'moving_variance'))
_CONV = (('kernel', 'weight', 'kernel'), ('bias', 'bias', 'bias'))


def _leaves(tree: Mapping, path: tuple = ()) -> Iterator[tuple[tuple, object]]:
  """(path, leaf) of a nested dict, in sorted key order as jax.tree flattens."""
  for key in sorted(tree):
    if isinstance(tree[key], Mapping):
      yield from _leaves(tree[key], path + (key,))
    else:
      yield path + (key,), tree[key]


def _modules(params, batch_stats
             ) -> Iterator[tuple[conventions.ModulePath, bool, dict]]:
  """(path, is BatchNorm, {leaf: shape}) for every module with variables."""
  shapes = {}
  for tree in (params, batch_stats):
    for keys, leaf in _leaves(tree):
      shapes.setdefault(keys[:-1], {})[keys[-1]] = leaf.shape
  for path, leaves in shapes.items():
    yield path, 'mean' in leaves, leaves


def _to_ours(value: np.ndarray, leaf: str, fmt: str, shape: tuple) -> np.ndarray:
  """A source tensor in our layout (or unchanged if no layout change fits)."""
  if leaf != 'kernel':
    return value
  if fmt == 'torch':
    return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
  if value.ndim == 4 and value.shape[3] == 1 and shape[2] == 1:
    return value.transpose(0, 1, 3, 2)  # Keras depthwise (H, W, C, 1).
  return value


def convert(tensors: Tensors, model: str, fmt: str, params, batch_stats
            ) -> tuple[dict, dict]:
  """Source `tensors` as our (params, batch_stats), shaped like the given
  trees (arrays or shape structs). Every tensor must be used, every leaf
  filled, and every shape fit; errors name the tensor and both shapes."""
  from resizer.models import composite  # pylint: disable=g-import-not-at-top
  weights = composite.BACKBONES[model].weights
  name_of = weights.torch_name if fmt == 'torch' else weights.keras_name
  sep = '.' if fmt == 'torch' else '/'
  net_layout = layout(params)
  unused = dict(tensors)
  out = {'params': {}, 'batch_stats': {}}
  for path, is_bn, shapes in _modules(params, batch_stats):
    source = name_of(path, net_layout)
    table = _BN if is_bn else _CONV
    for leaf, torch_suffix, keras_suffix in table:
      if leaf not in shapes:
        continue
      name = f'{source}{sep}{torch_suffix if fmt == "torch" else keras_suffix}'
      where = '/'.join(path + (leaf,))
      if name not in unused:
        raise WeightsMismatch(f'{where} ({model}) needs source tensor '
                              f'{name!r}, which the file does not have.')
      value = _to_ours(unused.pop(name), leaf, fmt, shapes[leaf])
      if value.shape != tuple(shapes[leaf]):
        raise WeightsMismatch(
            f'source tensor {name!r} has shape {tensors[name].shape} '
            f'({value.shape} in our layout), but {where} in {model} has '
            f'shape {tuple(shapes[leaf])}.')
      collection = 'batch_stats' if leaf in ('mean', 'var') else 'params'
      node = out[collection]
      for key in path:
        node = node.setdefault(key, {})
      node[leaf] = value
  if unused:
    names = sorted(unused)
    raise WeightsMismatch(
        f'{len(names)} source tensor(s) have no place in {model}: '
        + ', '.join(f'{n} {tensors[n].shape}' for n in names[:10])
        + (' ...' if len(names) > 10 else ''))
  return out['params'], out['batch_stats']


def import_weights(model: str, source: str, out: str,
                   fmt: str | None = None) -> dict:
  """Converts `source` into a warm-start checkpoint in `out`; returns the
  description also written to `out/imported.json`."""
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  from resizer import checkpoints
  from resizer.models import composite
  # pylint: enable=g-import-not-at-top
  if model not in composite.with_weights():
    raise ValueError(f'--model={model!r} is invalid; weights can be imported '
                     f'for {composite.with_weights()}.')
  weights = composite.BACKBONES[model].weights
  fmt = fmt or source_format(source)
  if fmt not in FORMATS:
    raise ValueError(f'--format={fmt!r} is invalid; expected one of '
                     f'{list(FORMATS)}.')
  source = paths.resolve(source)
  if not source.is_file():
    raise FileNotFoundError(f'--source={str(source)!r} does not exist.')
  out = paths.resolve(out)
  if (out / 'checkpoints').exists() or (out / run_record.IMPORTED_JSON).exists():
    raise FileExistsError(f'--out={str(out)!r} already holds a checkpoint; '
                          'choose a new directory (nothing was overwritten).')

  with paths.local_copy(source) as local:  # torch and h5py want a file.
    if fmt == 'torch':
      tensors = read_torch(local)
      head = weights.torch_name(('head',), {}) + '.weight'
      num_classes = tensors[head].shape[0] if head in tensors else None
    else:
      tensors = weights.fold_keras(read_keras(local, model), local)
      head = 'predictions/kernel'
      num_classes = tensors[head].shape[1] if head in tensors else None
    with open(local, 'rb') as f:
      digest = hashlib.file_digest(f, 'sha256').hexdigest()
  if not num_classes:
    raise WeightsMismatch(f'{source}: has no classifier tensor {head!r}; is '
                          f'it a {model} file?')
  convention = 'keras' if fmt == 'keras' else 'torchvision'
  # What the weights are; the backbone is built with base_config's
  # remaining model fields.
  model_cfg = dict(name=model, num_classes=int(num_classes), dtype='float32',
                   convention=convention)
  backbone = composite.build_backbone(
      dict(common.base_config().model.to_dict(), **model_cfg))
  shapes = jax.eval_shape(
      lambda: backbone.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                            train=False))
  params, batch_stats = convert(tensors, model, fmt, shapes['params'],
                                shapes['batch_stats'])
  if composite.convention(model_cfg).normalization == 'caffe':
    params['conv_stem']['kernel'] = params['conv_stem']['kernel'][:, :, ::-1]

  state = {'step': np.int32(0),
           'params': {'backbone': jax.tree.map(np.ascontiguousarray, params)},
           'batch_stats': {'backbone': batch_stats}}
  mgr = checkpoints.manager(out, keep=1, async_save=False)
  checkpoints.save(mgr, state)
  mgr.wait_until_finished()
  mgr.close()
  description = dict(model=model_cfg, source=str(source), format=fmt,
                     sha256=digest, num_tensors=len(tensors))
  paths.write_text_atomic(out / run_record.IMPORTED_JSON,
                          json.dumps(description, indent=2))
  return description


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_platforms', 'cpu')  # Converting needs no accelerator.
  args = flags.FLAGS
  try:
    description = import_weights(args.model, args.source, args.out,
                                 args.format)
  except (ValueError, FileNotFoundError, FileExistsError,
          ModuleNotFoundError) as e:
    raise cli.UserError(str(e)) from None
  print(json.dumps(description, indent=2))


if __name__ == '__main__':
  flags.DEFINE_string('model', None, 'Backbone to fill, e.g. resnet50 or '
                      'densenet121; an unknown name lists the others.')
  flags.DEFINE_string('source', None, 'Keras .h5 / .weights.h5 or torchvision '
                      '.pth file.')
  flags.DEFINE_string('out', None, 'New directory for the checkpoint.')
  flags.DEFINE_enum('format', None, list(FORMATS),
                    'Source format; by default from the file extension.')
  flags.mark_flags_as_required(['model', 'source', 'out'])
  cli.run(main, __doc__)

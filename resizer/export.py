r"""Exports a trained run as TensorFlow SavedModels (through jax2tf): the
resizer alone, and resizer + backbone.

  python -m resizer.export --workdir=runs/demo_learned_seed0 --out=export/demo

writes

  OUT/resizer/      uint8 images (batch, H, W, 3) → {'resized': float32
                    (batch, h, w, 3)}, in the [0, 1] range (not clipped:
                    the learned resizer's output may overshoot it)
  OUT/model/        uint8 images (batch, H, W, 3) → {'logits': float32
                    (batch, classes)} (for IQA runs, softmax gives the rating
                    distribution)
  OUT/export.json   sizes, class count, and the run and step exported

H x W is the run's resizer input size (config.resizer.in_size); the batch
size is free. Parameters are stored as SavedModel variables, the compute is
float32 whatever the run trained in, and the serialised computation is
lowered for CPU and GPU. Running the exported resizer on an image file needs
only TensorFlow: see examples/resize_image.py.
"""

import json
from typing import Callable, Sequence

from absl import flags
import numpy as np

from resizer import cli, paths, run_record

# TensorFlow, JAX and the models are imported where they are used, so that
# --help answers at once.

PLATFORMS = ('cpu', 'cuda')


def _save(fn: Callable, variables, in_size: tuple[int, int], output: str,
          path: str, platforms: Sequence[str]) -> None:
  """Saves `fn(variables, images)` with `variables` as TF variables."""
  # Quietly (cli.import_tensorflow), before jax2tf imports it.
  tf = cli.import_tensorflow(off_accelerators=False)
  from jax.experimental import jax2tf
  h, w = in_size
  tf_fn = jax2tf.convert(fn, with_gradient=False,
                         polymorphic_shapes=[None, f'(b, {h}, {w}, 3)'],
                         native_serialization_platforms=tuple(platforms))
  module = tf.Module()
  module.variables_ = tf.nest.map_structure(
      lambda x: tf.Variable(np.asarray(x), trainable=False), variables)

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([None, h, w, 3], tf.uint8, name='images')])
  def serve(images):
    return {output: tf_fn(module.variables_, images)}

  module.serve = serve
  tf.saved_model.save(module, path, signatures={'serving_default': serve})


def export(workdir: str, out: str, platforms: Sequence[str] = PLATFORMS,
           ema: bool = False) -> dict:
  """Exports the latest checkpoint of the run in `workdir` to `out`
  (which must not exist yet; either may be gs://), with its EMA weights if
  `ema`; returns what `out/export.json` holds."""
  from resizer.models import composite
  out = paths.resolve(out)
  if out.exists():
    raise FileExistsError(f'--out={out!r} already exists; choose a new '
                          'directory (nothing was overwritten).')
  config, variables, step = run_record.load_run(workdir, ema=ema)
  config.model.dtype = 'float32'
  model = composite.build_model(config)
  in_size, out_size = composite.sizes(config.resizer)
  resizer_variables = {c: {'resizer': v['resizer']}
                       for c, v in variables.items() if 'resizer' in v}

  def resize(v, images):
    return model.apply(v, images, train=False, method=model.resize)

  def logits(v, images):
    return model.apply(v, images, train=False)

  _save(resize, resizer_variables, in_size, 'resized',
        str(out / 'resizer'), platforms)
  _save(logits, variables, in_size, 'logits', str(out / 'model'), platforms)
  description = dict(
      workdir=str(paths.resolve(workdir)),
      step=step, weights='ema' if ema else 'trained',
      in_size=list(in_size), out_size=list(out_size),
      resizer=config.resizer.kind, backbone=config.model.name,
      num_classes=config.model.num_classes, task=config.get('task'),
      input='uint8 images (batch, in_size[0], in_size[1], 3)',
      platforms=list(platforms))
  paths.write_text_atomic(out / 'export.json',
                          json.dumps(description, indent=2))
  return description


def main(argv):
  del argv  # cli.run refuses positional arguments.
  import jax
  jax.config.update('jax_platforms', 'cpu')  # Lowering needs no accelerator.
  cli.import_tensorflow()
  args = flags.FLAGS
  try:
    description = export(args.workdir, args.out, args.platforms, args.ema)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    raise cli.UserError(str(e)) from None
  print(json.dumps(description, indent=2))


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'A run directory (resizer.main).')
  flags.DEFINE_string('out', None, 'New directory for the SavedModels.')
  flags.DEFINE_list('platforms', list(PLATFORMS),
                    'Platforms the SavedModels run on (cpu, cuda, tpu).')
  flags.DEFINE_bool('ema', False, "Export the run's EMA weights "
                    '(config.ema_decay > 0) instead of its own.')
  flags.mark_flags_as_required(['workdir', 'out'])
  cli.run(main, __doc__)

r"""The paper's figure for a trained run: input, naive resize, learned resize
(clipped to the valid range) and the residual (learned − naive, scaled
symmetrically around grey).

  python -m resizer.visualize --workdir=runs/demo_learned --out=figure.png
  python -m resizer.visualize --workdir=DIR --out=mine.png --images=photos/

Without --images, the first evaluation examples of the run's dataset are
shown; with it, an image file or every image in a directory, center-cropped
and resized to the run's input size as evaluation does.
"""

import io

import numpy as np
from absl import flags

from resizer import cli, paths, run_record

# TensorFlow, JAX, matplotlib and the models are imported where they are
# used, so that --help answers at once.

IMAGE_PATTERNS = ('*.jpg', '*.jpeg', '*.png', '*.bmp', '*.gif', '*.JPG',
                  '*.JPEG', '*.PNG')
COLUMNS = (('input', 'input'), ('naive', 'naive resize'),
           ('resized', 'learned resize'), ('residual', 'residual (learned − naive)'))


def load_run(workdir: str):
  """(config, model, variables) of the latest checkpoint in `workdir`."""
  from resizer.models import composite
  config, variables, _ = run_record.load_run(workdir)
  return config, composite.build_model(config), variables


def image_files(path: str) -> list[str]:
  """The image file `path` (local or gs://), or the images in it."""
  root = paths.resolve(path)
  if root.is_dir():
    files = sorted(str(f) for p in IMAGE_PATTERNS for f in root.glob(p))
    if not files:
      raise FileNotFoundError(f'--images={path}: no image files in it.')
    return files
  if not root.exists():
    raise FileNotFoundError(f'--images={path}: no such file or directory.')
  return [str(root)]


def load_images(config, paths: list[str]) -> np.ndarray:
  tf = cli.import_tensorflow(off_accelerators=False)
  from resizer import input_pipeline
  from resizer.models import composite
  size = composite.sizes(config.resizer).input
  images = []
  for p in paths:
    data = tf.io.read_file(p)
    try:
      images.append(input_pipeline.eval_image(data, config.input, size).numpy())
    except tf.errors.InvalidArgumentError as e:
      raise ValueError(f'{p}: not a decodable image ({e.message})') from None
  return np.stack(images)


def dataset_images(config, num: int) -> np.ndarray:
  from resizer import input_pipeline
  from resizer.models import composite
  size = composite.sizes(config.resizer).input
  builder = input_pipeline.get_builder(config.input)
  batch = next(input_pipeline.eval_batches(
      builder, config.input, size=size, local_batch_size=num, num_batches=1))
  return batch['image'][:int(batch['mask'].sum())]


def figure(panels: dict[str, np.ndarray], title: str, out: str) -> None:
  """Saves one row per image and one column per panel as a PNG at `out`
  (local or gs://)."""
  import matplotlib
  matplotlib.use('Agg')  # No display: files only.
  import matplotlib.pyplot as plt
  n = len(panels['input'])
  fig, axes = plt.subplots(n, len(COLUMNS), figsize=(3 * len(COLUMNS), 3 * n),
                           squeeze=False)
  for row in range(n):
    for col, (key, label) in enumerate(COLUMNS):
      ax = axes[row, col]
      ax.imshow(panels[key][row], interpolation='nearest')
      ax.set_xticks([]), ax.set_yticks([])
      if row == 0:
        ax.set_title(label, fontsize=10)
  fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  png = io.BytesIO()
  fig.savefig(png, format='png', dpi=100)
  plt.close(fig)
  paths.resolve(out).write_bytes(png.getvalue())


def main(argv):
  del argv  # cli.run refuses positional arguments.
  cli.import_tensorflow()
  from resizer import image_summaries
  args = flags.FLAGS
  cli.require_parent('out', args.out)  # Before the work, not after.
  try:
    files = image_files(args.images) if args.images else None
    config, model, variables = load_run(args.workdir)
    images = (load_images(config, files) if files
              else dataset_images(config, args.num))
  except (ValueError, FileNotFoundError) as e:
    raise cli.UserError(str(e)) from None
  panels = image_summaries.panel_fn(model)(variables, images)
  r = config.resizer
  title = (f"{config.model.name} · resizer {r.kind} ({r.interpolation}, "
           f"antialias={r.antialias}) · {r.in_size} → {r.out_size}")
  figure(panels, title, args.out)
  print(f'Wrote {args.out} ({len(images)} images).')


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'A run directory.')
  flags.DEFINE_string('out', None, 'The PNG to write.')
  flags.DEFINE_string('images', None, 'An image file or a directory of them.')
  flags.DEFINE_integer('num', 4, 'Dataset examples to show.')
  flags.mark_flags_as_required(['workdir', 'out'])
  cli.run(main, __doc__)

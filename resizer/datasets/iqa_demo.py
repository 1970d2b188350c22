r"""An offline stand-in for AVA: degraded real photos with simulated ratings.

  python -m resizer.datasets.iqa_demo --out=DIR [--num_images=800]

writes an AVA-format directory (`AVA.txt` + `images/<id>.jpg`) that the real
`ava` builder prepares. Each image is a random crop (192-320 pixels a side)
of one of the colour photos bundled with scikit-image and scikit-learn, put
through four degradations, each at a random level drawn from [0, 1]:

  blur        Gaussian blur, sigma = 3 * level pixels
  noise       additive Gaussian noise, std = 0.12 * level
  downscale   shrink by 1 + 3 * level, then enlarge back (loses detail)
  jpeg        saved at JPEG quality 95 - 85 * level

Rating model. Perceived quality falls with the total degradation
`d = 1.0 blur + 0.8 noise + 0.7 downscale + 0.6 jpeg` (noise and blur are the
most visible), so the true mean score is
`mu = 1.5 + 7 * exp(-1.1 * d) + photo_bias`, with a per-photo bias of ±0.5
(some scenes are liked more). Each of 60-200 voters gives
`round(mu + 1.3 * N(0, 1))` clipped to 1..10; the votes make the histogram.
So ratings are noisy, like AVA's, and a model can only recover the mean
score up to that noise. Every image is a pure function of (seed, index).
"""

import io

import numpy as np
import scipy.ndimage
import skimage.data
import skimage.transform
import sklearn.datasets
from absl import app, flags
from PIL import Image

from resizer import paths

PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field',
          'immunohistochemistry', 'retina')
WEIGHTS = {'blur': 1.0, 'noise': 0.8, 'downscale': 0.7, 'jpeg': 0.6}


def photos() -> list[np.ndarray]:
  """Bundled colour photos (no download), float in [0, 1], shorter side 384."""
  images = [getattr(skimage.data, n)()[..., :3] for n in PHOTOS]
  images += list(sklearn.datasets.load_sample_images().images)
  out = []
  for im in images:
    im = im.astype(np.float32) / 255
    scale = 384 / min(im.shape[:2])
    shape = (round(im.shape[0] * scale), round(im.shape[1] * scale))
    out.append(skimage.transform.resize(im, shape, anti_aliasing=True))
  return out


def degrade(image: np.ndarray, levels: dict[str, float],
            rng: np.random.Generator) -> bytes:
  """Applies the four degradations; returns the final JPEG's bytes."""
  x = image
  sigma = 3.0 * levels['blur']
  if sigma > 0.05:
    x = scipy.ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0))
  factor = 1.0 + 3.0 * levels['downscale']
  if factor > 1.05:
    small = (max(8, round(x.shape[0] / factor)), max(8, round(x.shape[1] / factor)))
    x = skimage.transform.resize(
        skimage.transform.resize(x, small, anti_aliasing=True), x.shape[:2])
  x = x + rng.normal(0.0, 0.12 * levels['noise'], x.shape)
  out = io.BytesIO()
  Image.fromarray(np.clip(np.round(x * 255), 0, 255).astype(np.uint8)).save(
      out, 'JPEG', quality=int(round(95 - 85 * levels['jpeg'])))
  return out.getvalue()


def rating_counts(levels: dict[str, float], photo_bias: float,
                  rng: np.random.Generator) -> np.ndarray:
  """Vote counts for scores 1..10 under the module's rating model."""
  d = sum(WEIGHTS[k] * v for k, v in levels.items())
  mu = 1.5 + 7.0 * np.exp(-1.1 * d) + photo_bias
  votes = np.clip(np.round(mu + 1.3 * rng.normal(size=rng.integers(60, 201))),
                  1, 10).astype(int)
  return np.bincount(votes - 1, minlength=10)


def write_ava_dir(out: paths.PathLike, num_images: int = 800, seed: int = 0
                  ) -> None:
  """Writes `num_images` degraded photos and their AVA.txt into `out`."""
  out = paths.resolve(out)
  (out / 'images').mkdir(parents=True, exist_ok=True)
  sources = photos()
  biases = np.random.default_rng(seed).uniform(-0.5, 0.5, len(sources))
  lines = []
  for index in range(num_images):
    rng = np.random.default_rng([seed, index])
    k = int(rng.integers(len(sources)))
    src = sources[k]
    h, w = (int(v) for v in rng.integers(192, 321, size=2))
    h, w = min(h, src.shape[0]), min(w, src.shape[1])
    top = int(rng.integers(0, src.shape[0] - h + 1))
    left = int(rng.integers(0, src.shape[1] - w + 1))
    levels = {name: float(rng.uniform()) for name in WEIGHTS}
    data = degrade(src[top:top + h, left:left + w], levels, rng)
    image_id = 100_000 + index
    (out / 'images' / f'{image_id}.jpg').write_bytes(data)
    counts = rating_counts(levels, biases[k], rng)
    lines.append(' '.join(map(str, [index + 1, image_id, *counts, 0, 0, k + 1])))
  # Written last: a directory with AVA.txt is a complete one.
  (out / 'AVA.txt').write_text('\n'.join(lines) + '\n')


def main(argv):
  del argv
  write_ava_dir(flags.FLAGS.out, flags.FLAGS.num_images)
  print(f'Wrote {flags.FLAGS.num_images} images and AVA.txt to {flags.FLAGS.out}.')


if __name__ == '__main__':
  # Flags only when run as a command: the input pipeline imports this module.
  flags.DEFINE_string('out', None, 'Directory to write.')
  flags.DEFINE_integer('num_images', 800, 'Images to write.')
  flags.mark_flags_as_required(['out'])
  app.run(main)

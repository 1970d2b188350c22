"""`fine_gratings`: a procedural classification set where resolution matters.

Each 128x128 image is a crop of a real photo (bundled with scikit-image)
with a soft-edged disc of sinusoidal grating blended in; the class is the
grating's orientation: 0°, 45°, 90° or 135° (±6° jitter). The grating's
period is 2.2-3.2 pixels: resolvable at 128x128 (above the 2-pixel Nyquist
limit), far too fine for 32x32, whose pixels span 4 input pixels.

Why a fixed resize loses the class at 32x32:
- antialiased (bilinear, bicubic, area): the low-pass filter removes the
  grating, leaving the photo: chance accuracy;
- not antialiased: sampling every 4th pixel aliases the grating to a
  low-frequency pattern whose orientation depends on the exact period
  (random per image), so orientation survives only partly.
A learned resizer sees the 128x128 input: its 7x7 convolution can detect
the orientation before the features are resized, and encode it in the
32x32 output. Classes are balanced (cycled) and every image is a pure
function of (split seed, index): preparing twice gives the same bytes.
"""

import functools

import numpy as np
import skimage.data
import skimage.transform
import tensorflow_datasets as tfds

SIZE = 128
ORIENTATIONS = (0, 45, 90, 135)
PERIOD_RANGE = (2.2, 3.2)       # pixels, at SIZE
JITTER_DEG = 6.0
RADIUS_RANGE = (22, 40)         # disc radius, pixels
CONTRAST_RANGE = (0.12, 0.3)    # grating amplitude, of a [0, 1] range
NOISE_STD = 0.02
PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field',
          'immunohistochemistry', 'retina')
SPLIT_SEEDS = {'train': 0, 'test': 1}


PHOTO_SHORT_SIDE = 2 * SIZE  # Photos are shrunk once, so crops are cheap.


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
  """The bundled colour photos as float arrays in [0, 1], shorter side
  PHOTO_SHORT_SIDE."""
  photos = []
  for name in PHOTOS:
    photo = getattr(skimage.data, name)()[..., :3].astype(np.float32) / 255
    scale = PHOTO_SHORT_SIDE / min(photo.shape[:2])
    shape = (round(photo.shape[0] * scale), round(photo.shape[1] * scale))
    photos.append(skimage.transform.resize(photo, shape, order=1,
                                           anti_aliasing=True))
  return tuple(np.asarray(p, np.float32) for p in photos)


def _background(rng: np.random.Generator) -> np.ndarray:
  """A random crop of a random photo at a random scale, SIZE x SIZE."""
  photo = _photos()[rng.integers(len(PHOTOS))]
  h, w = photo.shape[:2]
  side = int(rng.uniform(0.5, 1.0) * min(h, w))  # 128-256 px of a 256 px photo
  top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
  crop = photo[top:top + side, left:left + side]
  return skimage.transform.resize(crop, (SIZE, SIZE), order=1,
                                  anti_aliasing=True).astype(np.float32)


def make_example(seed: int, index: int) -> tuple[np.ndarray, int]:
  """Image `index` of the split with `seed`: (uint8 HxWx3, label)."""
  rng = np.random.default_rng([seed, index])
  label = index % len(ORIENTATIONS)
  image = _background(rng)
  theta = np.deg2rad(ORIENTATIONS[label] + rng.uniform(-JITTER_DEG, JITTER_DEG))
  period = rng.uniform(*PERIOD_RANGE)
  radius = rng.uniform(*RADIUS_RANGE)
  cy, cx = rng.uniform(radius, SIZE - radius, size=2)
  y, x = np.mgrid[:SIZE, :SIZE].astype(np.float32)
  phase = rng.uniform(0, 2 * np.pi)
  grating = np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / period
                   + phase)
  # Soft edge (3 px) so that the disc's outline carries no orientation.
  dist = np.hypot(y - cy, x - cx)
  mask = np.clip((radius - dist) / 3.0, 0.0, 1.0)
  contrast = rng.uniform(*CONTRAST_RANGE)
  image = image + (contrast * grating * mask)[..., None]
  image = image + rng.normal(0, NOISE_STD, image.shape)
  return np.clip(np.round(image * 255), 0, 255).astype(np.uint8), label


class FineGratings(tfds.core.GeneratorBasedBuilder):
  """Grating orientation under a photo background; see the module docstring."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name='default', description='4096 train, 1024 test.'),
      tfds.core.BuilderConfig(name='tiny', description='64 train, 32 test (tests).'),
  ]
  SPLIT_SIZES = {'default': {'train': 4096, 'test': 1024},
                 'tiny': {'train': 64, 'test': 32}}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(SIZE, SIZE, 3)),
            'label': tfds.features.ClassLabel(
                names=[f'{d}deg' for d in ORIENTATIONS]),
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    sizes = self.SPLIT_SIZES[self.builder_config.name]
    return {split: self._generate_examples(SPLIT_SEEDS[split], n)
            for split, n in sizes.items()}

  def _generate_examples(self, seed: int, num_examples: int):
    for index in range(num_examples):
      image, label = make_example(seed, index)
      yield index, {'image': image, 'label': label}

"""The demo dataset: deterministic, balanced, and resolution-dependent."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from resizer.datasets import fine_gratings
from resizer.models.resizers import resize


def oriented_energy_guess(image: np.ndarray, band: tuple[float, float]) -> int:
  """The orientation (class) whose angular sector of the power spectrum, in
  the frequency `band` (cycles per input pixel), holds the most energy."""
  grey = image.astype(np.float64).mean(-1)
  n = grey.shape[0]
  power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
  fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing='ij')
  radius = np.hypot(fy, fx)
  angle = np.rad2deg(np.arctan2(fy, fx)) % 180
  in_band = (radius >= band[0]) & (radius <= band[1])
  energies = []
  for deg in fine_gratings.ORIENTATIONS:
    diff = np.abs((angle - deg + 90) % 180 - 90)
    energies.append(power[in_band & (diff < 15)].sum())
  return int(np.argmax(energies))


def test_examples_are_a_pure_function_of_seed_and_index():
  a, la = fine_gratings.make_example(seed=0, index=5)
  b, lb = fine_gratings.make_example(seed=0, index=5)
  c, _ = fine_gratings.make_example(seed=1, index=5)
  assert la == lb and a.tobytes() == b.tobytes()
  assert a.tobytes() != c.tobytes()


def test_classes_are_balanced():
  labels = [fine_gratings.make_example(0, i)[1] for i in range(40)]
  assert np.bincount(labels).tolist() == [10, 10, 10, 10]


def test_class_is_visible_at_input_and_lost_by_antialiased_resize():
  """The design claim: separable at 128x128, near chance at 32x32."""
  examples = [fine_gratings.make_example(7, i) for i in range(80)]
  band = (1 / fine_gratings.PERIOD_RANGE[1] - 0.03,
          1 / fine_gratings.PERIOD_RANGE[0] + 0.03)
  at_input = np.mean([oriented_energy_guess(x, band) == y for x, y in examples])
  small = [np.asarray(resize(x[None].astype(np.float32), (32, 32), 'bilinear',
                             antialias=True)[0]) for x, _ in examples]
  at_target = np.mean([oriented_energy_guess(s, (0.05, 0.5)) == y
                       for s, (_, y) in zip(small, examples)])
  assert at_input > 0.9
  assert at_target < 0.45   # Chance is 0.25.


@pytest.mark.slow
def test_tfds_builder_prepares_the_same_bytes_twice(tmp_path):
  def prepared_images(data_dir):
    builder = tfds.builder('fine_gratings/tiny', data_dir=str(data_dir))
    builder.download_and_prepare()
    ds = builder.as_dataset(split='test', shuffle_files=False,
                            decoders={'image': tfds.decode.SkipDecoding()})
    return [(ex['image'], ex['label']) for ex in tfds.as_numpy(ds)]

  first = prepared_images(tmp_path / 'a')
  second = prepared_images(tmp_path / 'b')
  assert len(first) == 32
  assert [(bytes(i), int(l)) for i, l in first] == [(bytes(i), int(l)) for i, l in second]
  assert np.bincount([int(l) for _, l in first]).tolist() == [8, 8, 8, 8]

"""What resizer.visualize reads before it draws: a user's image files, each
at the run's input size, and a clear error naming a path it cannot use.
(The figure end to end, from a trained run: tests/test_demo_cli.py, and from
a bucket: tests/test_gcs.py.)"""

import numpy as np
import pytest

from resizer import visualize
from resizer.models import composite
from tests.helpers import save_photo
from tests.tiny_runs import tiny_config


def test_a_directory_of_photos_loads_at_the_runs_input_size(tmp_path):
  config = tiny_config()
  save_photo(tmp_path / 'a.png', 90, 120)
  save_photo(tmp_path / 'b.jpg', 64, 40)
  (tmp_path / 'notes.txt').write_text('not an image pattern')
  files = visualize.image_files(str(tmp_path))
  assert [f.rsplit('/', 1)[-1] for f in files] == ['a.png', 'b.jpg']  # Sorted.
  images = visualize.load_images(config, files)
  height, width = composite.sizes(config.resizer).input
  assert images.shape == (2, height, width, 3) and images.dtype == np.uint8


@pytest.mark.parametrize('make, message', [
    (lambda d: d / 'missing.png', 'missing.png: no such file or directory'),
    (lambda d: d, 'no image files in it'),
])
def test_a_path_without_images_is_named(tmp_path, make, message):
  with pytest.raises(FileNotFoundError, match=message):
    visualize.image_files(str(make(tmp_path)))


def test_an_undecodable_image_is_named(tmp_path):
  bad = tmp_path / 'bad.jpg'
  bad.write_bytes(b'not an image')
  with pytest.raises(ValueError, match='bad.jpg: not a decodable image'):
    visualize.load_images(tiny_config(), visualize.image_files(str(bad)))

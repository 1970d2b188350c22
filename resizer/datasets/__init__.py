"""TFDS builders of this project; importing the package registers them."""

from resizer.datasets import ava, fine_gratings  # noqa: F401

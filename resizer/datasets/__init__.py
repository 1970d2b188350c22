"""TFDS builders of this project; importing the package registers them."""

from resizer.datasets import ava, fine_gratings, iqa_demo  # noqa: F401

# `config.input.make_manual_dir`: name → (a function that writes a missing
# TFDS manual_dir, the file whose presence means it is written).
MANUAL_DIR_MAKERS = {
    # The offline IQA demo: degraded photos with simulated AVA ratings.
    'iqa_demo': (iqa_demo.write_ava_dir, 'AVA.txt'),
}

r"""EfficientNet-B0 on AVA (aesthetic quality, EMD loss) with a learned resizer 448→224.

Prepare AVA once: put AVA.txt and images/ in $TFDS_DATA_DIR/downloads/manual/
(layout in resizer/datasets/ava.py); the first run with --config.input.prepare=true
prepares it. Start from ImageNet weights, as the paper does: an ImageNet run's
workdir, or a directory written by `python -m resizer.import_weights`:

  python -m resizer.main --config=configs/ava_efficientnet.py:weights=$IMAGENET_WEIGHTS \
      --workdir=$WORKDIR --config.input.prepare=true

Arguments: resizer=learned|bicubic (the paper's baseline)|..., res=, out=,
antialias=, split=random_split|official, weights=<dir>. Reports SRCC/PLCC of
mean scores, EMD, binary accuracy at 5 and SRCC of the standard deviations.
"""

from configs import common


def get_config(arg=None):
  return common.ava_config(arg, backbone='efficientnet_b0')

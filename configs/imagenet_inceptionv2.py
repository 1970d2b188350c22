r"""Inception-v2 on ImageNet with a learned resizer 448→224 (the paper's setting).

Run (ImageNet prepared in $TFDS_DATA_DIR; see README):

  python -m resizer.main --config=configs/imagenet_inceptionv2.py --workdir=$WORKDIR

Arguments: resizer=learned|bilinear|bicubic|lanczos3|muller|none, res=<resizer
input size>, out=<backbone input size>, antialias=true|false, weights=<a
run's workdir> (no Keras or torchvision Inception-v2 weights exist to import),
e.g.
`--config=configs/imagenet_inceptionv2.py:resizer=bilinear,res=224` for the
default-resizing baseline. Counts and GFLOPs without training:

  python -m resizer.summary --config=configs/imagenet_inceptionv2.py
"""

from configs import common


def get_config(arg=None):
  return common.imagenet_config(arg, backbone='inception_v2')

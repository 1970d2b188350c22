r"""DenseNet-121 on ImageNet with a learned resizer 448→224 (the paper's setting).

Run (ImageNet prepared in $TFDS_DATA_DIR; see README):

  python -m resizer.main --config=configs/imagenet_densenet.py --workdir=$WORKDIR

Arguments: resizer=learned|bilinear|bicubic|lanczos3|muller|none, res=<resizer
input size>, out=<backbone input size>, antialias=true|false, weights=<dir>,
e.g.
`--config=configs/imagenet_densenet.py:resizer=bilinear,res=224` for the
default-resizing baseline. Counts and GFLOPs without training:

  python -m resizer.summary --config=configs/imagenet_densenet.py

Start from ImageNet weights (torchvision's or Keras'; the paper trains the
resizer jointly with a pretrained backbone): import them once, then pass
`weights=` (the head is re-initialised if the class count differs):

  python -m resizer.import_weights --model=densenet121 --source=densenet121-a639ec97.pth \
      --out=weights/densenet121_torchvision
  python -m resizer.main --config=configs/imagenet_densenet.py:weights=weights/densenet121_torchvision \
      --workdir=$WORKDIR
"""

from configs import common


def get_config(arg=None):
  return common.imagenet_config(arg, backbone='densenet121')

"""Weight conventions: what a backbone must do to reproduce weights trained
in another framework.

`config.model.convention` names one:

  'torchvision' (the default): the zoo's own layout, which is torchvision's —
      BatchNorm eps 1e-5, symmetric padding, ResNet v1.5, inputs normalised
      with ImageNet mean and std.
  'keras': Keras applications' `ResNet50`, `DenseNet121`, `MobileNetV2` and
      `EfficientNetB0` — ResNet v1 (stride in the first 1x1), BatchNorm eps
      1.001e-5 or 1e-3 and Keras' momenta, TensorFlow 'SAME' padding where
      Keras uses it, and each model's own input preprocessing.

`resizer.import_weights` writes a checkpoint for one convention, and the
trainer refuses to warm-start a model of another from it.
"""

import dataclasses
from typing import Any, Mapping

# Per-channel (mean, std) of images in [0, 1], RGB order.
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    'imagenet': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # x / 127.5 - 1: Keras' 'tf' preprocessing (MobileNetV2).
    'inception': ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    # 255 x - mean: Keras' 'caffe' preprocessing (ResNet50). Caffe's BGR
    # channel order is undone by the importer, which reverses the input
    # channels of the stem's kernel.
    'caffe': ((123.68 / 255, 116.779 / 255, 103.939 / 255),
              (1 / 255, 1 / 255, 1 / 255)),
}


@dataclasses.dataclass(frozen=True)
class Convention:
  """Backbone constructor arguments and the input normalisation it expects."""
  backbone_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  normalization: str = 'imagenet'


_KERAS_RESNET = Convention(
    dict(stride_in_1x1=True, bn_epsilon=1.001e-5, bn_momentum=0.99), 'caffe')
_KERAS_DENSENET = Convention(dict(bn_epsilon=1.001e-5, bn_momentum=0.99))
_KERAS_MOBILENET = Convention(
    dict(bn_epsilon=1e-3, bn_momentum=0.999, padding='tf_same'), 'inception')
_KERAS_EFFICIENTNET = Convention(
    dict(bn_epsilon=1e-3, bn_momentum=0.99, padding='tf_same'))

# Backbone name → its Keras convention (test-sized variants included, so
# the machinery can be exercised in seconds).
KERAS: dict[str, Convention] = {
    'resnet50': _KERAS_RESNET,
    'densenet121': _KERAS_DENSENET,
    'densenet_tiny': _KERAS_DENSENET,
    'mobilenet_v2': _KERAS_MOBILENET,
    'mobilenet_v2_tiny': _KERAS_MOBILENET,
    'efficientnet_b0': _KERAS_EFFICIENTNET,
    'efficientnet_tiny': _KERAS_EFFICIENTNET,
}
CONVENTIONS = ('torchvision', 'keras')


def get(backbone: str, convention: str) -> Convention:
  """The convention `convention` for backbone `backbone`, or a ValueError
  naming `config.model.convention`."""
  if convention == 'torchvision':
    return Convention()
  if convention == 'keras' and backbone in KERAS:
    return KERAS[backbone]
  if convention == 'keras':
    raise ValueError(f"config.model.convention='keras' is not available for "
                     f'config.model.name={backbone!r}; it is for '
                     f'{sorted(KERAS)}.')
  raise ValueError(f'config.model.convention={convention!r} is invalid; '
                   f'expected one of {list(CONVENTIONS)}.')

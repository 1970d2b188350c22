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

Each backbone family that can take foreign weights states, beside its
definition, a `ForeignWeights`: where its modules' tensors sit in
torchvision's and Keras' files, and its Keras convention. The registry
(`composite.BACKBONES`) attaches it to each backbone of the family.
"""

import dataclasses
import re
from typing import Any, Callable, Mapping

import numpy as np

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


CONVENTIONS = ('torchvision', 'keras')
# `config.model.convention` as the `weights=` config argument records it:
# that of the weights in config.init_from.workdir, which the entry points
# read (run_record.resolve_convention) before building a model.
FROM_WEIGHTS = 'from_weights'

# torchvision's MobileNetV2 and EfficientNet share one layout: the stem is
# features.0, the head's 1x1 convolution the module after the last feature
# block, and the classifier's linear layer classifier.1.
TORCH_FEATURES_FIXED = dict(conv_stem='features.0.0', bn_stem='features.0.1',
                            head='classifier.1')


def torch_features_head(module: str, num_blocks: int) -> str:
  """torchvision's name for `module` ('conv_head' or 'bn_head') in that
  layout, after `num_blocks` feature blocks past the stem."""
  return f'features.{num_blocks + 1}.{int(module == "bn_head")}'


# A module's path in our parameter tree: ('stage2_block1', 'conv1').
ModulePath = tuple[str, ...]
# Facts about one network read off our parameter tree (see
# `import_weights.layout`): block order, number of blocks and stages, and
# which blocks have an expansion convolution.
Layout = Mapping[str, Any]
Tensors = dict[str, np.ndarray]


class WeightsMismatch(ValueError):
  """A weights file that does not fit the requested backbone."""


def _unchanged(tensors: Tensors, path: str) -> Tensors:
  del path
  return tensors


# (our block's name, the module's path inside it joined by '/', layout) →
# the foreign module's name: 'stage2_block1', 'conv1' → 'layer2.0.conv1'.
BlockNamer = Callable[[str, str, Layout], str]


@dataclasses.dataclass(frozen=True)
class ForeignWeights:
  """How a backbone family's weights are named in torchvision state dicts
  and Keras applications files, and what reproducing Keras' numbers needs.

  *_fixed: our top-level modules outside the repeated blocks (stem, head)
      → the foreign module's name.
  *_block: names every other module (see BlockNamer).
  keras: the family's 'keras' convention.
  fold_keras: (Keras tensors, file path) → the tensors adjusted for our
      layout before the names are mapped (folds, checks); WeightsMismatch if
      the file cannot be represented.
  """
  torch_fixed: Mapping[str, str]
  torch_block: BlockNamer
  keras_fixed: Mapping[str, str]
  keras_block: BlockNamer
  keras: Convention
  fold_keras: Callable[[Tensors, str], Tensors] = _unchanged

  def torch_name(self, path: ModulePath, layout: Layout) -> str:
    """The torchvision module holding our module at `path`."""
    return _name(path, layout, self.torch_fixed, self.torch_block)

  def keras_name(self, path: ModulePath, layout: Layout) -> str:
    """The Keras layer holding our module at `path`."""
    return _name(path, layout, self.keras_fixed, self.keras_block)


def _name(path: ModulePath, layout: Layout, fixed: Mapping[str, str],
          block: BlockNamer) -> str:
  top = path[0]
  return fixed[top] if top in fixed else block(top, '/'.join(path[1:]), layout)


def block_index(name: str) -> tuple[int, ...]:
  """The numbers in a block's name: 'stage3_block2' → (3, 2)."""
  return tuple(int(n) for n in re.findall(r'\d+', name))

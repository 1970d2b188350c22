"""ResNet-18/50 and DenseNet-121 match torchvision and Keras (SPEC §3)."""

import pytest

from resizer.models.densenet import DenseNet121
from resizer.models.resnet import ResNet18, ResNet50
from tests.helpers import output_shape, variable_counts


@pytest.mark.slow
@pytest.mark.parametrize('make, trainable', [
    (ResNet18, 11_689_512), (ResNet50, 25_557_032), (DenseNet121, 7_978_856)])
def test_trainable_parameters_match_torchvision(make, trainable):
  params, stats = variable_counts(make(num_classes=1000))
  assert params == trainable


@pytest.mark.slow
def test_densenet121_total_with_bn_statistics_matches_keras():
  assert sum(variable_counts(DenseNet121(num_classes=1000))) == 8_062_504
  assert sum(variable_counts(DenseNet121(num_classes=2), (150, 150))) == 7_039_554


@pytest.mark.slow
@pytest.mark.parametrize('make', [ResNet18, ResNet50, DenseNet121])
@pytest.mark.parametrize('size', [(150, 150), (224, 224), (320, 200)])
def test_any_input_size(make, size):
  assert output_shape(make(num_classes=7), size) == (2, 7)

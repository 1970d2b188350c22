"""torchvision's ResNet-50, DenseNet, MobileNetV2 and EfficientNet-B0 written
out in plain torch, with torchvision's module names (so their state dicts
have torchvision's keys) and its forward passes.

There is no CPU build of torchvision to install here; these are the
reference the importer's torch path is checked against. The layouts follow
torchvision/models/{resnet,densenet,mobilenetv2,efficientnet}.py and
torchvision/ops/misc.py (Conv2dNormActivation, SqueezeExcitation).
"""

import collections

import torch
from torch import nn
import torch.nn.functional as F


def conv_norm_act(cin, cout, k, stride=1, groups=1, act=nn.ReLU):
  """torchvision's Conv2dNormActivation: [conv, bn(, act)], padding (k-1)//2."""
  layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups,
                      bias=False), nn.BatchNorm2d(cout)]
  if act is not None:
    layers.append(act(inplace=True))
  return nn.Sequential(*layers)


class Bottleneck(nn.Module):
  """v1.5: the stride sits on conv2 (3x3)."""

  def __init__(self, inplanes, planes, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = None
    if stride != 1 or inplanes != planes * 4:
      self.downsample = nn.Sequential(
          nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
          nn.BatchNorm2d(planes * 4))

  def forward(self, x):
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu(out + identity)


class ResNet50(nn.Module):

  def __init__(self, num_classes):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512),
                                             (3, 4, 6, 3))):
      layer = []
      for j in range(blocks):
        layer.append(Bottleneck(inplanes, planes, 2 if i > 0 and j == 0 else 1))
        inplanes = planes * 4
      setattr(self, f'layer{i + 1}', nn.Sequential(*layer))
    self.fc = nn.Linear(2048, num_classes)

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    for i in range(4):
      x = getattr(self, f'layer{i + 1}')(x)
    return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DenseLayer(nn.Module):

  def __init__(self, cin, growth, bn_size):
    super().__init__()
    self.norm1 = nn.BatchNorm2d(cin)
    self.relu1 = nn.ReLU(inplace=True)
    self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
    self.norm2 = nn.BatchNorm2d(bn_size * growth)
    self.relu2 = nn.ReLU(inplace=True)
    self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

  def forward(self, x):
    y = self.conv1(self.relu1(self.norm1(x)))
    return torch.cat([x, self.conv2(self.relu2(self.norm2(y)))], 1)


class DenseNet(nn.Module):
  """DenseNet-BC; DenseNet(32, (6, 12, 24, 16), 64) is densenet121."""

  def __init__(self, growth, block_config, num_init_features, num_classes,
               bn_size=4):
    super().__init__()
    f = collections.OrderedDict(
        conv0=nn.Conv2d(3, num_init_features, 7, 2, 3, bias=False),
        norm0=nn.BatchNorm2d(num_init_features), relu0=nn.ReLU(inplace=True),
        pool0=nn.MaxPool2d(3, 2, 1))
    channels = num_init_features
    for i, n in enumerate(block_config):
      layers = collections.OrderedDict()
      for j in range(n):
        layers[f'denselayer{j + 1}'] = DenseLayer(channels, growth, bn_size)
        channels += growth
      f[f'denseblock{i + 1}'] = nn.Sequential(layers)
      if i != len(block_config) - 1:
        f[f'transition{i + 1}'] = nn.Sequential(collections.OrderedDict(
            norm=nn.BatchNorm2d(channels), relu=nn.ReLU(inplace=True),
            conv=nn.Conv2d(channels, channels // 2, 1, bias=False),
            pool=nn.AvgPool2d(2, 2)))
        channels //= 2
    f['norm5'] = nn.BatchNorm2d(channels)
    self.features = nn.Sequential(f)
    self.classifier = nn.Linear(channels, num_classes)

  def forward(self, x):
    x = F.relu(self.features(x))
    return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):

  def __init__(self, inp, oup, stride, t):
    super().__init__()
    hidden = int(round(inp * t))
    self.use_res_connect = stride == 1 and inp == oup
    layers = [conv_norm_act(inp, hidden, 1, act=nn.ReLU6)] if t != 1 else []
    layers += [conv_norm_act(hidden, hidden, 3, stride, hidden, nn.ReLU6),
               nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
    self.conv = nn.Sequential(*layers)

  def forward(self, x):
    return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):

  def __init__(self, num_classes):
    super().__init__()
    features = [conv_norm_act(3, 32, 3, 2, act=nn.ReLU6)]
    inp = 32
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2),
                       (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)):
      for j in range(n):
        features.append(InvertedResidual(inp, c, s if j == 0 else 1, t))
        inp = c
    features.append(conv_norm_act(inp, 1280, 1, act=nn.ReLU6))
    self.features = nn.Sequential(*features)
    self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

  def forward(self, x):
    x = F.adaptive_avg_pool2d(self.features(x), 1)
    return self.classifier(torch.flatten(x, 1))


class SqueezeExcitation(nn.Module):

  def __init__(self, channels, squeeze):
    super().__init__()
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc1 = nn.Conv2d(channels, squeeze, 1)
    self.fc2 = nn.Conv2d(squeeze, channels, 1)
    self.activation = nn.SiLU(inplace=True)
    self.scale_activation = nn.Sigmoid()

  def forward(self, x):
    s = self.fc2(self.activation(self.fc1(self.avgpool(x))))
    return x * self.scale_activation(s)


class MBConv(nn.Module):

  def __init__(self, cin, cout, expand, k, stride):
    super().__init__()
    self.use_res_connect = stride == 1 and cin == cout
    exp = cin * expand  # _make_divisible(cin * expand, 8) is exact for B0.
    layers = [conv_norm_act(cin, exp, 1, act=nn.SiLU)] if exp != cin else []
    layers += [conv_norm_act(exp, exp, k, stride, exp, nn.SiLU),
               SqueezeExcitation(exp, max(1, cin // 4)),
               conv_norm_act(exp, cout, 1, act=None)]
    self.block = nn.Sequential(*layers)

  def forward(self, x):
    # Stochastic depth is the identity in eval mode.
    return x + self.block(x) if self.use_res_connect else self.block(x)


class EfficientNetB0(nn.Module):

  def __init__(self, num_classes):
    super().__init__()
    features = [conv_norm_act(3, 32, 3, 2, act=nn.SiLU)]
    cin = 32
    for expand, k, s, cout, n in ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2),
                                  (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                                  (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
                                  (6, 3, 1, 320, 1)):
      stage = []
      for j in range(n):
        stage.append(MBConv(cin, cout, expand, k, s if j == 0 else 1))
        cin = cout
      features.append(nn.Sequential(*stage))
    features.append(conv_norm_act(cin, 1280, 1, act=nn.SiLU))
    self.features = nn.Sequential(*features)
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.classifier = nn.Sequential(nn.Dropout(0.2),
                                    nn.Linear(1280, num_classes))

  def forward(self, x):
    return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def build(name: str, num_classes: int) -> nn.Module:
  """The torchvision-layout model for one of our backbone names, in eval
  mode, with random BatchNorm statistics and affine parameters (so a test
  sees whether they are mapped, not just the kernels)."""
  model = {
      'resnet50': lambda: ResNet50(num_classes),
      'densenet121': lambda: DenseNet(32, (6, 12, 24, 16), 64, num_classes),
      'densenet_tiny': lambda: DenseNet(8, (2, 2), 16, num_classes),
      'mobilenet_v2': lambda: MobileNetV2(num_classes),
      'efficientnet_b0': lambda: EfficientNetB0(num_classes),
  }[name]()
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
        m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
        m.running_mean.copy_(torch.randn(m.running_mean.shape,
                                         generator=gen) * 0.2)
        m.running_var.copy_(torch.rand(m.running_var.shape,
                                       generator=gen) + 0.5)
  return model.eval()

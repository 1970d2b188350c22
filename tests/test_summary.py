"""A config's parameter counts and FLOPs (resizer.models.costs), and
`python -m resizer.summary`, which prints them."""

import json
import subprocess
import sys

import pytest

from configs import demo, imagenet_densenet
from resizer.models import costs


@pytest.mark.slow
def test_imagenet_densenet_summary_counts():
  s = costs.model_summary(imagenet_densenet.get_config())
  assert s['resizer_params'] == 12_035
  # The paper's count: convolution kernels only.
  assert s['resizer_conv_weights'] == 11_872
  assert s['backbone_params'] == 7_978_856
  assert s['batch_stats'] == 83_648 + 128
  assert s['total_params'] == 7_978_856 + 12_035 + 83_648 + 128
  assert s['in_size'] == [448, 448] and s['out_size'] == [224, 224]


@pytest.mark.slow
def test_learned_resizer_costs_flops_the_bilinear_baseline_does_not():
  learned = costs.model_summary(
      imagenet_densenet.get_config('resizer=learned,res=448'))
  none = costs.model_summary(imagenet_densenet.get_config('resizer=none'))
  # DenseNet-121 at 224 is ~2.9 GMACs, so ~5.7 GFLOPs.
  assert 5.0 < none['gflops_per_image'] < 6.5
  assert learned['gflops_per_image'] > none['gflops_per_image'] + 1.5
  assert none['resizer_params'] == 0 and none['in_size'] == [224, 224]


def conv_gflops(pixels: int, kernel: int, cin: int, cout: int) -> float:
  """Forward GFLOPs of a stride-1 'SAME' convolution, by hand: 2 per MAC."""
  return 2 * pixels * kernel * kernel * cin * cout / 1e9


def test_the_demo_resizer_adds_a_paper_like_share_of_the_backbones_cost():
  # The paper's resizer adds 20-24% to ResNet-50 at 224. A demo where it
  # costs several times the backbone compares a stem, not a resizer.
  learned = costs.model_summary(demo.get_config())
  none = costs.model_summary(demo.get_config('resizer=none'))
  n = demo.get_config().resizer.num_filters
  by_hand = (conv_gflops(128 * 128, 7, 3, n) + conv_gflops(128 * 128, 1, n, n)
             + 3 * conv_gflops(32 * 32, 3, n, n)     # residual block + conv
             + conv_gflops(32 * 32, 7, n, 3))
  added = learned['gflops_per_image'] - none['gflops_per_image']
  assert added == pytest.approx(by_hand, rel=0.1)
  assert 0.2 <= added / none['gflops_per_image'] <= 0.6


@pytest.mark.slow
def test_command_line_json(tmp_path):
  out = subprocess.run(
      [sys.executable, '-m', 'resizer.summary',
       '--config=configs/imagenet_densenet.py:resizer=bicubic,res=320', '--json'],
      capture_output=True, text=True, check=True)
  last = json.loads(out.stdout.strip().splitlines()[-1])
  for key in ('resizer_params', 'backbone_params', 'batch_stats',
              'total_params', 'gflops_per_image', 'in_size', 'out_size'):
    assert key in last
  assert last['in_size'] == [320, 320] and last['resizer'] == 'fixed'
  assert 'forward GFLOPs/image' in out.stdout

"""Checkpoints written on one device count are read on any other: resume,
eval_only and init_from, each in a process with its own number of (forced
CPU) devices, as a run moves from a pod to a workstation or to a smaller
slice. (resizer.export and resizer.visualize read a run through the same
`checkpoints.load` as init_from.)

The resumed run is compared with an uninterrupted run on the new device
count: with the full-batch step (tests/test_data_parallel.py) the device
count changes only the reduction order, so they agree to float32 rounding.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from resizer import checkpoints
from tests.helpers import tiny_demo_args

pytestmark = pytest.mark.slow  # runs in subprocesses at several device counts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def on_devices(num_devices, *args):
  """`python -m args` in a process that sees `num_devices` CPU devices."""
  env = {**os.environ, 'XLA_FLAGS':
         f'--xla_force_host_platform_device_count={num_devices}'}
  out = subprocess.run([sys.executable, '-m', *args], cwd=ROOT, env=env,
                       text=True, capture_output=True)
  assert out.returncode == 0, out.stderr[-4000:]
  return out


def train(num_devices, workdir, data_dir, steps, *flags):
  return on_devices(num_devices, *tiny_demo_args(
      workdir, data_dir, steps, '--config.checkpoint_every_steps=3',
      f'--config.eval_every_steps={steps}', '--config.async_checkpoints=false',
      *flags))


# SGD: its update is linear in the gradient, so rounding differences stay
# rounding-sized (Adam's normalised update magnifies them where gradients are
# near zero, and hides a gradient scaled by the device count).
SGD = ('--config.optim.name=sgd', '--config.optim.learning_rate=0.05',
       '--config.optim.momentum=0.9')


def test_resume_on_fewer_devices_continues_the_same_optimisation(
    tmp_path, data_dir):
  """4 devices for 3 steps, then 2 devices to step 6, against 6 steps on 2."""
  moved, straight = tmp_path / 'moved', tmp_path / 'straight'
  # The paper's n=16 resizer, for which the tolerance below was set. With
  # the demo's n=8 some BatchNorm biases differ by ~1e-3 of their norm
  # (4.2e-6 of 4.5e-3): not yet explained, see the note of 2026-11-30.
  sgd = (*SGD, '--config.resizer.num_filters=16')
  train(4, moved, data_dir, 3, *sgd)
  log = train(2, moved, data_dir, 6, *sgd, '--allow_config_change').stderr
  assert 'Resumed from' in log and 'at step 3' in log
  train(2, straight, data_dir, 6, *sgd)
  a, b = checkpoints.load(moved), checkpoints.load(straight)
  assert int(a['step']) == int(b['step']) == 6
  # Per tensor, relative to its norm: rounding differences of the first three
  # steps (4 vs 2 devices) grow a little over the next three; a step that
  # depended on the device count would differ by a sizeable part of an update.
  for key in ('params', 'batch_stats', 'opt_state'):
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a[key])[0],
                            jax.tree.leaves(b[key])):
      distance = np.linalg.norm(np.ravel(x - y))
      assert distance <= 1e-4 * np.linalg.norm(np.ravel(y)) + 1e-7, (
          key, jax.tree_util.keystr(path), distance)


def test_a_run_on_8_devices_is_read_on_1_and_a_run_on_1_resumes_on_8(
    tmp_path, data_dir):
  pod, stage2 = tmp_path / 'pod', tmp_path / 'stage2'
  train(8, pod, data_dir, 3)
  trained = json.loads((pod / 'results.json').read_text())

  # 8 → 1: evaluation and warm start.
  again = train(1, pod, data_dir, 3, '--config.eval_only=true')
  assert 'Resumed from' in again.stderr
  [evaluated] = json.loads((pod / 'results.json').read_text())['evaluations']
  assert evaluated['num_devices'] == 1 and evaluated['step'] == 3
  assert evaluated['eval']['loss'] == pytest.approx(trained['eval']['loss'],
                                                    rel=1e-4)
  train(1, stage2, data_dir, 3, f'--config.init_from.workdir={pod}')

  # 1 → 8: the warm-started run resumes on the pod.
  log = train(8, stage2, data_dir, 6, '--allow_config_change').stderr
  assert 'Resumed from' in log and 'at step 3' in log
  assert json.loads((stage2 / 'results.json').read_text())['steps'] == 6

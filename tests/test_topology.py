"""Checkpoints written on one device count are read on any other: resume,
eval_only and init_from, each in a process with its own number of (forced
CPU) devices, as a run moves from a pod to a workstation or to a smaller
slice. (resizer.export and resizer.visualize read a run through the same
`checkpoints.load` as init_from.)

The resumed run is compared with the uninterrupted run on the device count
it left: their first steps are the same program on the same data, bit for
bit, so only where the later steps ran differs, and with the full-batch
step (tests/test_data_parallel.py) that changes only the reduction order.
Against an uninterrupted run on the new device count the comparison would
also carry the rounding differences of the first steps, which training can
amplify: with the demo's settings, 6-step runs on 2 and on 4 devices agree
to 8.5e-7 at step 3 and differ by 7.6e-3 at step 6 (both deterministic; on
the scale below, the resizer's momentum).
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
from tests.tiny_runs import copy_run

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


@pytest.fixture(scope='module')
def four_device_run(tmp_path_factory, data_dir):
  """3 steps on 4 devices, shared by the tests below, which read or resume
  copies of it."""
  workdir = tmp_path_factory.mktemp('topology') / 'four'
  train(4, workdir, data_dir, 3, *SGD)
  return workdir


def test_resume_on_fewer_devices_continues_the_same_optimisation(
    four_device_run, tmp_path, data_dir):
  """4 devices for 3 steps, then 2 devices to step 6, against 6 steps on 4."""
  moved = copy_run(four_device_run, tmp_path / 'moved')
  straight = tmp_path / 'straight'
  log = train(2, moved, data_dir, 6, *SGD, '--allow_config_change').stderr
  assert 'Resumed from' in log and 'at step 3' in log
  train(4, straight, data_dir, 6, *SGD)
  a, b = checkpoints.load(moved), checkpoints.load(straight)
  assert int(a['step']) == int(b['step']) == 6
  # Steps 4-6 on 2 devices against the same steps on 4: rounding apart, the
  # same update; a step that depended on the device count would move every
  # tensor by a sizeable part of its update.
  for key in ('params', 'batch_stats', 'opt_state'):
    ys = [np.asarray(y, np.float64) for y in jax.tree.leaves(b[key])]
    typical = np.sqrt(sum(np.sum(y**2) for y in ys) / sum(y.size for y in ys))
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a[key])[0],
                            ys):
      # Relative to the tensor's norm plus that of a tensor of its size
      # holding the collection's typical entry: some gradients nearly cancel
      # (a BatchNorm bias whose shift the next BatchNorm removes), and their
      # sum carries the rounding of its large terms, not of its small total.
      # (Measured on an AMD EPYC host, against a 2-device run: a BatchNorm
      # bias's momentum differed by 2.4e-3 of its own norm.)
      scale = np.linalg.norm(np.ravel(y)) + typical * np.sqrt(y.size)
      distance = np.linalg.norm(np.ravel(np.asarray(x, np.float64) - y))
      assert distance <= 1e-4 * scale, (key, jax.tree_util.keystr(path),
                                        distance, scale)


def test_a_run_on_4_devices_is_read_on_1_and_a_run_on_1_resumes_on_8(
    four_device_run, tmp_path, data_dir):
  pod = copy_run(four_device_run, tmp_path / 'pod')
  stage2 = tmp_path / 'stage2'
  trained = json.loads((pod / 'results.json').read_text())

  # 4 → 1: evaluation and warm start.
  again = train(1, pod, data_dir, 3, *SGD, '--config.eval_only=true')
  assert 'Resumed from' in again.stderr
  [evaluated] = json.loads((pod / 'results.json').read_text())['evaluations']
  assert evaluated['num_devices'] == 1 and evaluated['step'] == 3
  assert evaluated['eval']['loss'] == pytest.approx(trained['eval']['loss'],
                                                    rel=1e-4)
  train(1, stage2, data_dir, 3, *SGD, f'--config.init_from.workdir={pod}')

  # 1 → 8: the warm-started run resumes on a larger slice.
  log = train(8, stage2, data_dir, 6, *SGD, '--allow_config_change').stderr
  assert 'Resumed from' in log and 'at step 3' in log
  assert json.loads((stage2 / 'results.json').read_text())['steps'] == 6

"""Two jax.distributed processes on localhost (CPU, gloo collectives) take the
full-batch gradient step, and the trainer runs end to end across them."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests import data_parallel_case as case

pytestmark = pytest.mark.slow  # several processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_processes(args_for, n):
  procs = [subprocess.Popen(args_for(i), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True) for i in range(n)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  return outputs


def test_two_processes_step_is_the_full_batch_gradient_step(tmp_path):
  """2 processes x 2 devices, each feeding its half of the global batch, take
  the single-device full-batch step of tests/data_parallel_case.py."""
  script = os.path.join(ROOT, 'tests', 'multiprocess_step.py')
  port = free_port()
  run_processes(lambda i: [sys.executable, script, str(tmp_path / f'{i}.npz'),
                           '2', str(i), str(port), '2'], 2)
  config = case.config()
  expected, metrics = case.reference_step(config, case.initial_state(config),
                                          case.batch())
  expected_leaves = jax.tree.leaves(expected)
  for i in range(2):
    got = np.load(tmp_path / f'{i}.npz')
    assert len(got.files) == len(expected_leaves) + 2
    for k, want in enumerate(expected_leaves):
      np.testing.assert_allclose(got[f'arr_{k}'], want, rtol=1e-5, atol=1e-6)
    for k in ('loss', 'grad_norm'):
      np.testing.assert_allclose(got[k], metrics[k], rtol=1e-5)


def test_trainer_across_two_processes_evaluates_every_example_once(tmp_path,
                                                                  data_dir):
  port = free_port()
  workdir = tmp_path / 'run'
  env_flags = ['--config=configs/demo.py', f'--workdir={workdir}',
               '--config.input.dataset=fine_gratings/tiny',
               f'--config.input.data_dir={data_dir}',
               '--config.input.batch_size=16', '--config.input.eval_batch_size=8',
               '--config.model.name=resnet_tiny', '--config.total_steps=3',
               '--config.checkpoint_every_steps=3', '--config.eval_every_steps=3',
               '--config.image_summary_every_steps=0',
               '--config.async_checkpoints=false']

  def args(i):
    return [sys.executable, '-c',
            'import os, sys; os.environ["XLA_FLAGS"] = '
            '"--xla_force_host_platform_device_count=2"; '
            'os.environ["JAX_PLATFORMS"] = "cpu"; '
            'from absl import app; from resizer import main; '
            'sys.argv = ["resizer.main"] + sys.argv[1:]; '
            'app.run(main.main)',
            *env_flags, f'--coordinator_address=127.0.0.1:{port}',
            '--num_processes=2', f'--process_id={i}']

  outputs = run_processes(args, 2)
  results = json.loads((workdir / 'results.json').read_text())
  assert results['num_devices'] == 4 and results['steps'] == 3
  assert results['eval']['num_examples'] == 32  # The whole test split, once.
  assert len([f for f in os.listdir(workdir) if f.startswith('events')]) == 1
  assert os.listdir(workdir / 'checkpoints') == ['3']
  assert 'Process 1 of 2' in outputs[1]

"""Two jax.distributed processes on localhost (CPU, gloo collectives) train
exactly as one process does, and the trainer runs end to end across them."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import tensorflow_datasets as tfds

import resizer.datasets  # noqa: F401  (registers fine_gratings)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_processes(args_for, n):
  env = {**os.environ, 'PYTHONPATH': ROOT}
  procs = [subprocess.Popen(args_for(i), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True) for i in range(n)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  return outputs


def test_two_processes_match_one_on_the_same_global_batch(tmp_path):
  script = os.path.join(ROOT, 'tests', 'multiprocess_step.py')
  port = free_port()
  run_processes(lambda i: [sys.executable, script, str(tmp_path / f'two_{i}.npz'),
                           '2', str(i), str(port), '2'], 2)
  run_processes(lambda i: [sys.executable, script, str(tmp_path / 'one.npz'),
                           '1', '0', '0', '4'], 1)
  one = np.load(tmp_path / 'one.npz')
  for i in range(2):
    two = np.load(tmp_path / f'two_{i}.npz')
    assert sorted(two.files) == sorted(one.files)
    for k in one.files:  # Same math, reduction order may differ slightly.
      np.testing.assert_allclose(two[k], one[k], rtol=2e-5, atol=1e-6)


def test_trainer_across_two_processes_evaluates_every_example_once(tmp_path):
  data_dir = tmp_path / 'tfds'
  tfds.builder('fine_gratings/tiny', data_dir=str(data_dir)).download_and_prepare()
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

"""One process's failure stops the whole job within two minutes, and every
process's last line names the process that failed: faults injected into
process 1 of 2 jax.distributed processes (2 CPU devices each, gloo), as on
two hosts of a slice. A rerun resumes from the last checkpoint."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import tiny_demo_args

pytestmark = pytest.mark.slow  # several processes, killed on purpose

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOUND_S = 120  # Every process has exited this long after the fault.
HOST = socket.gethostname()


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class Job:
  """Two processes of one job, each with its log in tmp_path; `faults`:
  per process, Python run before resizer.main (see tests/faults.py)."""

  def __init__(self, tmp_path, workdir, data_dir, steps, *flags,
               faults=('', ''), name='job'):
    port = free_port()
    self.logs = [tmp_path / f'{name}{i}.log' for i in range(2)]
    self.procs = []
    for i in range(2):
      code = ('import os, sys; os.environ["XLA_FLAGS"] = '
              '"--xla_force_host_platform_device_count=2"; '
              'os.environ["JAX_PLATFORMS"] = "cpu"; '
              f'{faults[i] or "pass"}; '
              'from absl import app; from resizer import main; '
              'sys.argv = sys.argv[1:]; app.run(main.main)')
      args = [*tiny_demo_args(workdir, data_dir, steps, *flags),
              f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
              f'--process_id={i}']
      self.procs.append(subprocess.Popen(
          [sys.executable, '-c', code, *args], cwd=ROOT,
          stdout=open(self.logs[i], 'w'), stderr=subprocess.STDOUT))

  def log(self, i) -> str:
    return self.logs[i].read_text()

  def wait(self, timeout=600) -> list[int]:
    try:
      return [p.wait(timeout=timeout) for p in self.procs]
    finally:
      for p in self.procs:
        if p.poll() is None:
          p.kill()

  def wait_for(self, predicate, what, timeout=300) -> None:
    deadline = time.time() + timeout
    while not predicate():
      assert time.time() < deadline, f'never saw {what}'
      assert all(p.poll() is None for p in self.procs), (
          f'a process ended before {what}: {self.log(0)[-3000:]}')
      time.sleep(0.2)

  def last_line(self, i) -> str:
    return self.log(i).strip().splitlines()[-1]


def exits_within_bound(job: Job, since: float) -> list[int]:
  codes = job.wait(timeout=BOUND_S + 60)
  took = time.time() - since
  assert took < BOUND_S, f'the job took {took:.0f} s to stop'
  return codes


def test_an_exception_at_start_up_stops_both_naming_the_process(
    tmp_path, data_dir):
  started = time.time()
  job = Job(tmp_path, tmp_path / 'run', data_dir, 20,
            faults=('', 'from tests import faults; faults.fail_at_startup()'))
  assert exits_within_bound(job, started) == [1, 1]
  line = (f'error: process 1 ({HOST}) failed: RuntimeError: injected fault: '
          'fine_gratings/tiny is not ready here')
  assert job.last_line(0) == line, job.log(0)[-3000:]
  assert job.last_line(1) == line, job.log(1)[-3000:]


def test_an_exception_mid_training_stops_both_and_a_rerun_resumes(
    tmp_path, data_dir):
  """Process 1's stream fails after 5 batches; checkpoints every 2 steps."""
  workdir = tmp_path / 'run'
  flags = ('--config.checkpoint_every_steps=2', '--config.log_every_steps=1',
           '--config.eval_every_steps=100', '--config.async_checkpoints=false')
  job = Job(tmp_path, workdir, data_dir, 12, *flags,
            faults=('', 'from tests import faults; faults.fail_after_steps(5)'))
  job.wait_for(lambda: 'injected fault' in job.log(1), 'the fault')
  assert exits_within_bound(job, time.time()) == [1, 1]
  line = (f'error: process 1 ({HOST}) failed: RuntimeError: injected fault: '
          'corrupted record after 5 batches')
  assert job.last_line(0) == line and job.last_line(1) == line
  # As a kill would leave it: the last checkpoint, and how the launch ended.
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']
  segment, = json.loads((workdir / 'segments.json').read_text())
  assert segment['end_step'] == 4 and segment['ended'] == line[len('error: '):]
  assert not (workdir / 'lease.json').exists()

  rerun = Job(tmp_path, workdir, data_dir, 12, *flags, name='rerun')
  assert rerun.wait() == [0, 0], rerun.log(0)[-3000:]
  assert 'at step 4' in rerun.log(0)
  results = json.loads((workdir / 'results.json').read_text())
  assert [(s['start_step'], s['end_step']) for s in results['segments']] == [
      (0, 4), (4, 12)]


def test_a_killed_process_is_named_as_not_responding(tmp_path, data_dir):
  workdir = tmp_path / 'run'
  job = Job(tmp_path, workdir, data_dir, 2000,
            '--config.checkpoint_every_steps=2', '--config.log_every_steps=1',
            '--config.eval_every_steps=10000')
  job.wait_for(lambda: (workdir / 'checkpoints' / '2').exists(),
               'a checkpoint')
  job.procs[1].send_signal(signal.SIGKILL)
  killed = time.time()
  codes = exits_within_bound(job, killed)
  assert codes == [1, -signal.SIGKILL]
  assert job.last_line(0) == f'error: process 1 ({HOST}) stopped responding'


def test_sigterm_to_one_process_checkpoints_both_and_exits_143(
    tmp_path, data_dir):
  workdir = tmp_path / 'run'
  job = Job(tmp_path, workdir, data_dir, 2000,
            '--config.checkpoint_every_steps=1000', '--config.log_every_steps=1',
            '--config.eval_every_steps=10000')
  job.wait_for(lambda: ' · ETA ' in job.log(0), 'training')
  job.procs[1].send_signal(signal.SIGTERM)
  assert exits_within_bound(job, time.time()) == [143, 143]
  for i in range(2):
    assert 'Preempted (SIGTERM) after step' in job.log(i)


def test_an_unprepared_data_dir_is_prepared_once_while_the_other_waits(
    tmp_path):
  """Both processes start on an empty data_dir: process 0 generates the
  data set, process 1 waits for it, then both train."""
  workdir, data_dir = tmp_path / 'run', tmp_path / 'tfds'
  job = Job(tmp_path, workdir, data_dir, 2, '--config.input.prepare=true',
            '--config.checkpoint_every_steps=2')
  assert job.wait() == [0, 0], job.log(1)[-3000:]
  results = json.loads((workdir / 'results.json').read_text())
  assert results['steps'] == 2 and results['num_devices'] == 4

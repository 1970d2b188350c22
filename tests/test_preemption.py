"""SIGTERM (a TPU preemption) mid-run: checkpoint at the current step, exit
143, and a resumed run ends exactly where an uninterrupted one does."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.helpers import tiny_demo_args

pytestmark = pytest.mark.slow  # a killed training process

# SIGTERM goes out once step 5 is logged; the run must still be going when
# it arrives (else the test skips), so 15 steps (~5 s here) are left.
TOTAL_STEPS = 20


def command(workdir, data_dir, steps=TOTAL_STEPS):
  return [sys.executable, '-m', *tiny_demo_args(
      workdir, data_dir, steps, '--config.checkpoint_every_steps=1000',
      '--config.eval_every_steps=1000', '--config.log_every_steps=5')]


def checkpoint(workdir):
  mgr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  step = mgr.latest_step()
  return step, mgr.restore(step, args=ocp.args.StandardRestore())


def test_sigterm_saves_the_current_step_and_resume_matches(tmp_path, data_dir):
  straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
  # The uninterrupted run, alongside the interrupted one.
  straight_log = open(tmp_path / 'straight.log', 'w')
  straight_run = subprocess.Popen(command(straight, data_dir),
                                  stdout=straight_log,
                                  stderr=subprocess.STDOUT)
  try:
    log = open(tmp_path / 'stopped.log', 'w')
    proc = subprocess.Popen(command(stopped, data_dir), stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while ' · ETA ' not in (tmp_path / 'stopped.log').read_text():  # Step 5.
      assert proc.poll() is None and time.time() < deadline, 'run ended early'
      time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 143
    text = (tmp_path / 'stopped.log').read_text()
    assert 'Preempted (SIGTERM) after step' in text
    step, _ = checkpoint(stopped)
    if step == TOTAL_STEPS:
      pytest.skip('the run finished before the signal arrived')
    assert f'after step {step}:' in text and 5 <= step < TOTAL_STEPS

    subprocess.run(command(stopped, data_dir), check=True, capture_output=True)
    assert straight_run.wait(timeout=300) == 0, (
        (tmp_path / 'straight.log').read_text()[-2000:])
  finally:  # A failure or skip above must not leave it running.
    if straight_run.poll() is None:
      straight_run.kill()
  # Both launches count in the record: the stopped one up to its checkpoint.
  record = json.loads((stopped / 'results.json').read_text())
  assert [(s['start_step'], s['end_step']) for s in record['segments']] == [
      (0, step), (step, TOTAL_STEPS)]
  assert record['wall_time_sec'] == pytest.approx(
      sum(s['wall_time_sec'] for s in record['segments']), abs=0.11)
  (a_step, a), (b_step, b) = checkpoint(straight), checkpoint(stopped)
  assert a_step == b_step == TOTAL_STEPS
  for key in ('params', 'batch_stats', 'opt_state'):
    for x, y in zip(jax.tree.leaves(a[key]), jax.tree.leaves(b[key])):
      np.testing.assert_array_equal(x, y)

"""What a workdir records and guards: one live owner at a time, a resume
that would train differently refused before anything is written, and a
results.json whose totals add up over launches and evaluations."""

import glob
import json
import os
import re
import shutil
import socket
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import tensorflow as tf

from resizer import checkpoints, lease, paths, run_record
from tests.helpers import tiny_demo_args
from tests.tiny_runs import copy_run, run, tiny_config

pytestmark = pytest.mark.slow  # end-to-end runs in subprocesses


def write_lease(workdir, **fields):
  os.makedirs(workdir, exist_ok=True)
  owner = dict(host=socket.gethostname(), pid=os.getpid(),
               started=time.time(), heartbeat=time.time())
  owner.update(fields)
  (workdir / lease.LEASE_FILE).write_text(json.dumps(owner))


def snapshot(workdir):
  """Every file under `workdir` with its bytes."""
  return {os.path.relpath(os.path.join(d, f), workdir):
          open(os.path.join(d, f), 'rb').read()
          for d, _, files in os.walk(workdir) for f in files}


# ------------------------------------------------------------------- lease

def test_a_live_owner_is_named_and_nothing_is_written(tmp_path):
  sleeper = subprocess.Popen(['sleep', '60'])
  try:
    write_lease(tmp_path, pid=sleeper.pid)
    with pytest.raises(lease.WorkdirInUse,
                       match=rf'in use by pid {sleeper.pid} on host '):
      run(tiny_config(), tmp_path)
  finally:
    sleeper.kill()
  assert sorted(os.listdir(tmp_path)) == [lease.LEASE_FILE]


@pytest.mark.parametrize('fields, reason', [
    (dict(pid=2 ** 22 + 12345), 'is no longer running on this host'),
    (dict(host='elsewhere', heartbeat=time.time() - 3600), 'heartbeat is'),
])
def test_a_stale_lease_is_taken_over_with_a_warning(tmp_path, fields, reason,
                                                    caplog):
  write_lease(tmp_path, **fields)
  owner = lease.Lease(tmp_path)
  owner.acquire()
  assert reason in caplog.text
  held = json.loads((tmp_path / lease.LEASE_FILE).read_text())
  assert held['pid'] == os.getpid()
  owner.release()
  assert not (tmp_path / lease.LEASE_FILE).exists()


def test_a_live_lease_on_another_host_is_respected(tmp_path):
  write_lease(tmp_path, host='elsewhere', pid=1)
  with pytest.raises(lease.WorkdirInUse, match='on host elsewhere'):
    lease.Lease(tmp_path).acquire()


# ------------------------------------------------------------ resume checks

def unfinished_copy(trained_tiny_run, workdir):
  """A copy of the shared 4-step run as a kill before its last checkpoint
  leaves it: checkpointed to step 2, without results.json."""
  copy_run(trained_tiny_run[0], workdir)
  shutil.rmtree(workdir / 'checkpoints' / '4')
  os.remove(workdir / 'results.json')
  return workdir


def test_a_resume_that_would_train_differently_is_refused_untouched(
    trained_tiny_run, tmp_path):
  workdir = unfinished_copy(trained_tiny_run, tmp_path / 'run')
  before = snapshot(workdir)
  changed = tiny_config(**{'model.name': 'densenet_tiny',
                           'optim.learning_rate': 0.5})
  with pytest.raises(run_record.ConfigChangedError) as error:
    run(changed, workdir)
  message = str(error.value)
  assert "config.model.name: 'resnet_tiny' (recorded) → 'densenet_tiny'" in message
  assert 'config.optim.learning_rate: 0.01 (recorded) → 0.5 (now)' in message
  assert snapshot(workdir) == before  # Not a byte written.
  assert not (workdir / lease.LEASE_FILE).exists()  # And the lease is free.


def test_an_allowed_change_is_recorded_not_overwritten(trained_tiny_run,
                                                       tmp_path):
  workdir = copy_run(trained_tiny_run[0], tmp_path / 'run')
  longer = tiny_config(total_steps=6, **{'optim.learning_rate': 0.02})
  results = run(longer, workdir, allow_config_change=True)
  assert results['steps'] == 6
  [entry] = json.loads((workdir / 'config_changes.json').read_text())
  assert entry['step'] == 4
  assert {c['key']: (c['recorded'], c['new']) for c in entry['changes']} == {
      'optim.learning_rate': (0.01, 0.02), 'total_steps': (4, 6)}
  assert json.loads((workdir / 'config.json').read_text())['total_steps'] == 6


def test_reporting_keys_may_change_on_resume(trained_tiny_run, tmp_path):
  workdir = unfinished_copy(trained_tiny_run, tmp_path / 'run')
  results = run(tiny_config(**{'eval_every_steps': 1, 'log_every_steps': 1,
                               'keep_checkpoints': 5}), workdir)
  assert results['steps'] == 4
  [segment, resumed] = results['segments']
  assert resumed['start_step'] == 2  # It trained, under the new keys.


def test_a_size_written_another_way_is_the_same_size():
  recorded = json.loads(tiny_config().to_json())
  for same in ('48x48', (48, 48), [48, 48]):
    assert run_record.config_changes(
        recorded, tiny_config(**{'resizer.in_size': same})) == []
  assert run_record.config_changes(
      recorded, tiny_config(**{'resizer.in_size': '48x40'})) == [
          ('resizer.in_size', 48, '48x40')]


def test_a_key_added_since_the_record_was_written_reads_as_its_default():
  recorded = json.loads(tiny_config().to_json())
  del recorded['optim']['accumulate_steps']
  assert run_record.config_changes(recorded, tiny_config()) == []
  assert run_record.config_changes(
      recorded, tiny_config(**{'optim.accumulate_steps': 2})) == [
          ('optim.accumulate_steps', 1, 2)]


# --------------------------------------------------------------- the record

def test_eval_only_and_a_finished_rerun_keep_the_training_record(
    trained_tiny_run, tmp_path):
  tmp_path = copy_run(trained_tiny_run[0], tmp_path / 'run')
  trained = trained_tiny_run[1]
  record = json.loads((tmp_path / 'results.json').read_text())
  assert [s['start_step'] for s in record['segments']] == [0]
  assert record['segments'][0]['end_step'] == 4
  assert record['wall_time_sec'] == record['segments'][0]['wall_time_sec'] > 0

  evaluated = run(tiny_config(eval_only=True), tmp_path)
  assert evaluated['eval']['loss'] == pytest.approx(trained['eval']['loss'],
                                                    rel=1e-6)
  after = json.loads((tmp_path / 'results.json').read_text())
  assert after['eval'] == record['eval']  # Training's result stays.
  assert after['wall_time_sec'] == record['wall_time_sec']
  [evaluation] = after['evaluations']
  assert evaluation['step'] == 4 and evaluation['eval'] == evaluated['eval']
  assert json.loads((tmp_path / 'config.json').read_text())['eval_only'] is False

  again = run(tiny_config(), tmp_path)  # Finished: nothing to do.
  assert again == after
  assert json.loads((tmp_path / 'results.json').read_text()) == after


def test_a_second_launch_on_a_running_workdir_is_refused(tmp_path, data_dir):
  """Two real launches of one command: the second exits naming the first;
  the first finishes with its own record. The first is paused (SIGSTOP)
  while the second runs, so it is surely still running then, however long
  the second takes to start."""
  workdir = tmp_path / 'run'
  args = [sys.executable, '-m', *tiny_demo_args(
      workdir, data_dir, 4, '--config.checkpoint_every_steps=2',
      '--config.eval_every_steps=4')]
  log = open(tmp_path / 'first.log', 'w')
  first = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
  try:
    deadline = time.time() + 300
    while not (workdir / 'config.json').exists():
      assert first.poll() is None, (tmp_path / 'first.log').read_text()[-3000:]
      assert time.time() < deadline
      time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)
    try:
      second = subprocess.run(args, capture_output=True, text=True)
    finally:
      first.send_signal(signal.SIGCONT)
    assert second.returncode == 1
    assert f'is in use by pid {first.pid} on host' in second.stderr
    assert first.wait(timeout=300) == 0
  finally:
    if first.poll() is None:
      first.kill()
  results = json.loads((workdir / 'results.json').read_text())
  assert results['steps'] == 4 and len(results['segments']) == 1
  assert not (workdir / lease.LEASE_FILE).exists()


# -------------------------------------------------------------- checkpoints

def test_the_fingerprint_changes_with_any_one_bit_and_only_then():
  rng = np.random.default_rng(0)
  state = {'params': {'w': rng.normal(size=(5, 7)).astype(np.float32)},
           'opt_state': (np.int32(3), {'mu': np.zeros(4, np.float16)})}
  same = jax.tree.map(np.copy, state)
  assert checkpoints.fingerprint(state) == checkpoints.fingerprint(same)
  for leaf in ("['params']['w']", "['opt_state'][1]['mu']"):
    flipped = jax.tree.map(np.copy, state)
    array = (flipped['params']['w'] if 'w' in leaf
             else flipped['opt_state'][1]['mu'])
    array.view(np.uint8).reshape(-1)[3] ^= 0x10  # One bit.
    changed = {k for k, v in checkpoints.fingerprint(flipped).items()
               if checkpoints.fingerprint(state)[k] != v}
    assert changed == {leaf}


def largest_data_file(step_dir):
  files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir) for f in fs
           if os.sep + 'd' + os.sep in os.path.join(d, f)]
  return max(files, key=os.path.getsize)


def truncate(step_dir):
  path = largest_data_file(step_dir)
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


def drop_metadata(step_dir):
  os.remove(os.path.join(step_dir, 'default', '_METADATA'))


def flip_bytes(step_dir):
  path = largest_data_file(step_dir)
  data = bytearray(open(path, 'rb').read())
  middle = len(data) // 2
  data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
  open(path, 'wb').write(bytes(data))


# A truncated array fails one of Orbax's concurrent reads; the others are
# then dropped unfinished, and Python reports each dropped coroutine's
# exception as "ignored" (16 warnings): Orbax's clean-up, not ours, and the
# restore's error itself is what the test checks.
@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
@pytest.mark.parametrize('damage, reason', [
    (truncate, 'error while reading array'),
    (drop_metadata, 'pytree structure error'),
    # Where the flip lands decides who notices: the store (compressed
    # chunks) or, when it loads without complaint, the fingerprint.
    (flip_bytes, ''),
])
def test_a_damaged_latest_step_is_named_set_aside_and_the_one_before_used(
    tmp_path, trained_tiny_run, damage, reason, caplog):
  workdir = copy_run(trained_tiny_run[0], tmp_path / 'run')
  damage(str(workdir / 'checkpoints' / '4'))
  results = run(tiny_config(eval_only=True), workdir)
  assert results['evaluations'][-1]['step'] == 2
  [aside] = os.listdir(workdir / 'corrupt_checkpoints')
  assert aside.startswith('4-') and sorted(os.listdir(
      workdir / 'checkpoints')) == ['2']
  assert f"Checkpoint {workdir / 'checkpoints' / '4'} cannot be used" in caplog.text
  assert reason in caplog.text


def test_another_model_in_the_checkpoints_is_refused_not_set_aside(
    tmp_path, trained_tiny_run):
  workdir = copy_run(trained_tiny_run[0], tmp_path / 'run')
  other = tiny_config(**{'eval_only': True, 'resizer.num_filters': 8})
  with pytest.raises(ValueError, match='holds another model'):
    run(other, workdir)
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']
  assert not (workdir / 'corrupt_checkpoints').exists()


@pytest.mark.parametrize('value, reason', [
    (np.nan, 'NaN or infinite values'), (3.3e37, '|values| up to 3.3e+37')])
def test_sound_but_unusable_parameters_stop_the_run_and_stay(
    tmp_path, trained_tiny_run, value, reason):
  """A step that matches its fingerprint is what training wrote: an earlier
  step would lead back to it, so the run stops instead of falling back."""
  workdir = copy_run(trained_tiny_run[0], tmp_path / 'run')
  state = checkpoints.load(workdir)
  leaf = state['params']['resizer']['conv_in']['kernel']
  state['params']['resizer']['conv_in']['kernel'] = leaf.at[0, 0, 0, 0].set(
      value)
  state['step'] = state['step'] + 2
  mgr = checkpoints.manager(workdir, keep=5, async_save=False)
  checkpoints.save(mgr, state)
  mgr.close()
  before = snapshot(workdir / 'checkpoints')
  with pytest.raises(checkpoints.UnusableParams) as error:
    run(tiny_config(eval_only=True), workdir)
  assert str(error.value).startswith(
      f"{workdir / 'checkpoints'}/6: params['resizer']['conv_in']['kernel'] "
      f'holds {reason}'), error.value
  assert snapshot(workdir / 'checkpoints') == before
  assert not (workdir / 'corrupt_checkpoints').exists()


@pytest.fixture
def small_disk(tmp_path):
  """A 1.5 MiB tmpfs: room for one checkpoint of the tiny demo run."""
  path = tmp_path / 'disk'
  path.mkdir()
  if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1536k', 'tmpfs',
                     str(path)], capture_output=True).returncode:
    pytest.skip('cannot mount a tmpfs here')
  yield path
  subprocess.run(['umount', '-l', str(path)], check=False)


def test_a_record_that_does_not_fit_names_its_file_and_keeps_the_old_one(
    small_disk):
  """results.json, segments.json and the lease go through
  paths.write_text_atomic: on a full disk the error names the file (a
  failed write() names none), the previous version stays, and no partial
  temporary file is left."""
  path = small_disk / 'results.json'
  paths.write_text_atomic(path, '{"old": true}')
  with pytest.raises(OSError, match=rf'No space left on device: cannot write '
                     rf'{re.escape(str(path))}'):
    paths.write_text_atomic(path, 'x' * (2 << 20))  # 2 MiB > the 1.5 MiB disk.
  assert path.read_text() == '{"old": true}'
  assert sorted(os.listdir(small_disk)) == ['results.json']


def test_a_full_disk_stops_the_run_at_once_keeping_earlier_checkpoints(
    small_disk, data_dir):
  workdir = small_disk / 'run'
  out = subprocess.run(
      [sys.executable, '-m', *tiny_demo_args(
          workdir, data_dir, 40, '--config.checkpoint_every_steps=2',
          '--config.eval_every_steps=40', '--config.keep_checkpoints=5')],
      capture_output=True, text=True)
  assert out.returncode != 0
  # One line names the path and the cause (Orbax's own tracebacks and its
  # threads' noise at exit surround it).
  errors = [l for l in out.stderr.splitlines() if l.startswith('error: ')]
  assert len(errors) == 1, out.stderr[-3000:]
  [line] = errors
  assert 'No space left on device' in line and str(workdir) in line, line
  good = sorted(int(s) for s in os.listdir(workdir / 'checkpoints')
                if s.isdigit())
  assert good == list(range(2, good[-1] + 1, 2))
  if line.startswith('error: The checkpoint of step '):
    # Usually the disk fills in a checkpoint: stopped before the next save.
    failed = int(line.split()[5])
    assert f"{workdir / 'checkpoints' / str(failed)} (" in line
    assert f'The last good checkpoint is step {good[-1]}.' in line
    assert f'Saving checkpoint at step {failed + 4}' not in out.stderr
  # The good steps are intact: the latest restores and matches its fingerprint.
  mgr = checkpoints.manager(workdir, keep=5, async_save=False)
  restored = checkpoints.restore_latest(mgr, checkpoints.load(workdir), workdir)
  assert int(restored['step']) == good[-1]


# ---------------------------------------------------------------- TensorBoard

def logged_steps(workdir):
  """{tag: [step, ...]} over every event file, as TensorFlow reads them."""
  steps = {}
  for path in sorted(glob.glob(str(workdir / 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        steps.setdefault(value.tag, []).append(event.step)
  return {tag: sorted(s) for tag, s in steps.items()}


def test_a_resume_leaves_one_tensorboard_history(tmp_path, trained_tiny_run):
  """Killed after logging step 4 but before its checkpoint: the resumed run
  logs step 4 again, and the history holds it once, as an uninterrupted
  run does."""
  uninterrupted = logged_steps(trained_tiny_run[0])
  assert uninterrupted['train/loss'] == [2, 4]
  workdir = unfinished_copy(trained_tiny_run, tmp_path / 'run')
  run(tiny_config(), workdir)
  assert len(glob.glob(str(workdir / 'events.out.tfevents.*'))) == 2
  assert logged_steps(workdir) == uninterrupted


def test_a_half_written_last_event_does_not_stop_the_resume(tmp_path,
                                                            trained_tiny_run):
  """A hard kill can cut an event file mid-record: the resume keeps what
  reads and goes on."""
  workdir = unfinished_copy(trained_tiny_run, tmp_path / 'run')
  [events] = glob.glob(str(workdir / 'events.out.tfevents.*'))
  with open(events, 'r+b') as f:
    f.truncate(os.path.getsize(events) - 7)
  results = run(tiny_config(), workdir)
  assert results['steps'] == 4
  assert logged_steps(workdir)['train/loss'] == [2, 4]
  assert not glob.glob(str(workdir / '.rewrite-*'))

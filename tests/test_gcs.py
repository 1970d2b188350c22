"""A run whose workdir is a gs:// bucket, against a real GCS API offline
(tests/gcs_emulator.py): config.json, results.json, TensorBoard events and
Orbax checkpoints land in the bucket and nothing in a local `gs:` folder; a
killed run resumes from the bucket; report, visualize and export read it
back and write there.

Libraries covered: etils.epath and tf.io.gfile (our files, TensorBoard
through clu, SavedModels), Orbax with TensorStore (checkpoints) and
google-cloud-storage (Orbax's bucket query).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.helpers import tiny_demo_args

pytestmark = pytest.mark.slow  # training against a local GCS emulator

pytest.importorskip('gcp_storage_emulator')
if not shutil.which('openssl'):
  pytest.skip('openssl is needed for the test certificate',
              allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = 'test-bucket'


def make_certificates(directory: str) -> None:
  """A test CA and a certificate for *.googleapis.com signed by it."""
  def openssl(*args):
    subprocess.run(['openssl', *args], cwd=directory, check=True,
                   capture_output=True)
  ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  openssl('req', '-x509', *ec, '-keyout', 'ca.key', '-out', 'ca.pem',
          '-days', '2', '-subj', '/CN=test-ca',
          '-addext', 'basicConstraints=critical,CA:TRUE',
          '-addext', 'keyUsage=critical,keyCertSign')
  openssl('req', *ec, '-keyout', 'leaf.key', '-out', 'leaf.csr',
          '-subj', '/CN=www.googleapis.com')
  with open(os.path.join(directory, 'leaf.ext'), 'w') as f:
    f.write('basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n'
            'subjectAltName=DNS:www.googleapis.com,DNS:storage.googleapis.com\n')
  openssl('x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey',
          'ca.key', '-CAcreateserial', '-out', 'leaf.pem', '-days', '2',
          '-extfile', 'leaf.ext')


@pytest.fixture(scope='module')
def bucket(tmp_path_factory):
  """gs://test-bucket on a local emulator; every library pointed at it
  through the environment (inherited by the subprocesses below)."""
  certs = str(tmp_path_factory.mktemp('certs'))
  make_certificates(certs)
  proc = subprocess.Popen(
      [sys.executable, os.path.join(ROOT, 'tests', 'gcs_emulator.py'),
       '--bucket', BUCKET, '--certdir', certs],
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  ports = json.loads(proc.stdout.readline())
  emulator = f"http://127.0.0.1:{ports['emulator_port']}"
  proxy = f"http://127.0.0.1:{ports['proxy_port']}"
  env = {
      'TENSORSTORE_GCS_HTTP_URL': emulator,      # TensorStore
      'STORAGE_EMULATOR_HOST': emulator,         # google-cloud-storage
      'HTTPS_PROXY': proxy, 'https_proxy': proxy,  # TensorFlow
      'CURL_CA_BUNDLE': os.path.join(certs, 'ca.pem'),
      'NO_PROXY': '127.0.0.1,localhost', 'no_proxy': '127.0.0.1,localhost',
      # No credential lookups, no metadata server.
      'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'test-token', 'NO_GCE_CHECK': 'true',
      'GOOGLE_CLOUD_PROJECT': 'test-project',
  }
  with pytest.MonkeyPatch.context() as mp:
    for k, v in env.items():
      mp.setenv(k, v)
    urllib.request.urlopen(f'{emulator}/wipe?keep-buckets=1').read()
    yield f'gs://{BUCKET}'
  proc.stdin.close()  # The emulator exits when its stdin closes.
  proc.wait(timeout=10)


def cli(cwd, *args, check=True):
  out = subprocess.run([sys.executable, '-m', *args], cwd=cwd, text=True,
                       capture_output=True)
  if check:
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
  return out


def train_command(workdir, data_dir, steps):
  return [sys.executable, '-m', *tiny_demo_args(
      workdir, data_dir, steps, '--config.checkpoint_every_steps=2',
      f'--config.eval_every_steps={steps}', '--config.log_every_steps=2')]


def test_gs_workdir_trains_resumes_and_is_read_back(bucket, tmp_path,
                                                    data_dir):
  from etils import epath  # After the environment points TF at the emulator.
  cwd = tmp_path / 'cwd'  # A relative 'gs:' folder would appear here.
  cwd.mkdir()
  run = epath.Path(bucket) / 'runs' / 'demo'

  # Killed (SIGKILL) once its first checkpoint is in the bucket.
  log = open(tmp_path / 'first.log', 'w')
  proc = subprocess.Popen(train_command(run, data_dir, 400), cwd=cwd,
                          stdout=log, stderr=subprocess.STDOUT)
  try:
    deadline = time.time() + 300
    # A step is complete on GCS once Orbax wrote its commit marker.
    while not list(run.glob('checkpoints/*/commit_success.txt')):
      assert proc.poll() is None, (tmp_path / 'first.log').read_text()[-3000:]
      assert time.time() < deadline
      time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert (run / 'config.json').exists() and not (run / 'results.json').exists()

  # Resumed to a shorter end, which changes the run: allowed and recorded.
  resumed = subprocess.run(train_command(run, data_dir, 6)
                           + ['--allow_config_change'], cwd=cwd,
                           text=True, capture_output=True)
  assert resumed.returncode == 0, resumed.stderr[-4000:]
  assert f'Resumed from {run}/checkpoints at step' in resumed.stderr, [
      l for l in resumed.stderr.splitlines() if 'Resumed' in l or 'Training from' in l]
  results = json.loads((run / 'results.json').read_text())
  assert results['steps'] == 6 and results['eval']['num_examples'] == 32
  # The killed launch counts up to its last checkpoint, in the bucket.
  assert [s['end_step'] for s in results['segments']][-1] == 6
  assert len(results['segments']) == 2
  assert json.loads((run / 'config.json').read_text())['total_steps'] == 6
  [change] = json.loads((run / 'config_changes.json').read_text())
  assert change['changes'] == [dict(key='total_steps', recorded=400, new=6)]
  assert list(run.glob('events.out.tfevents.*'))
  assert '6' in [p.name for p in (run / 'checkpoints').iterdir()]
  assert not os.path.exists(cwd / 'gs:') and not os.listdir(cwd)

  # The tools read the run from the bucket and write there.
  report = cli(cwd, 'resizer.report', str(run), f'--out={bucket}/report.md')
  assert 'fine_gratings/tiny' in report.stdout
  assert (epath.Path(bucket) / 'report.md').read_text().strip() == (
      report.stdout.strip())
  cli(cwd, 'resizer.visualize', f'--workdir={run}',
      f'--out={bucket}/figure.png', '--num=2')
  assert (epath.Path(bucket) / 'figure.png').read_bytes()[:4] == b'\x89PNG'
  cli(cwd, 'resizer.export', f'--workdir={run}', f'--out={bucket}/export',
      '--platforms=cpu')
  exported = json.loads((epath.Path(bucket) / 'export' / 'export.json')
                        .read_text())
  assert exported['step'] == 6 and exported['workdir'] == str(run)
  assert (epath.Path(bucket) / 'export' / 'resizer' / 'saved_model.pb').exists()
  assert not os.listdir(cwd)

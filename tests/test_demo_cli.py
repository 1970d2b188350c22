"""The demo end to end through the command-line tools, on a tiny dataset:
resizer.main, resizer.report and resizer.visualize, each as a user runs
them. (A relaunch that resumes: tests/test_gcs.py, tests/test_topology.py,
tests/test_preemption.py.)"""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from tests.helpers import save_photo

pytestmark = pytest.mark.slow  # the command-line tools end to end


def cli(*args, **kwargs):
  return subprocess.run([sys.executable, '-m', *args], capture_output=True,
                        text=True, check=True, **kwargs)


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('demo')
  workdir = root / 'run'
  args = ['resizer.main', '--config=configs/demo.py', f'--workdir={workdir}',
          '--config.input.dataset=fine_gratings/tiny',
          f'--config.input.data_dir={root / "tfds"}',
          '--config.input.batch_size=16', '--config.input.eval_batch_size=16',
          '--config.model.name=resnet_tiny', '--config.total_steps=2',
          '--config.checkpoint_every_steps=2', '--config.eval_every_steps=2',
          '--config.image_summary_every_steps=2', '--config.log_every_steps=1',
          # Non-square sizes as a user types them (their other spellings
          # parse to the same sizes: tests/test_configs.py).
          '--config.resizer.in_size=64x48', '--config.resizer.out_size=32x24']
  # TensorFlow's own log as a user sees it (tests/conftest.py quiets it).
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  log = cli(*args, env=env).stderr
  return workdir, args, log


def test_demo_config_prepares_its_data_trains_and_writes_results(finished_run):
  workdir, _, _ = finished_run
  results = json.loads((workdir / 'results.json').read_text())
  assert results['config'] == 'configs/demo.py'
  assert results['dataset'] == 'fine_gratings/tiny'
  assert results['eval']['num_examples'] == 32 and results['steps'] == 2
  assert (results['in_size'], results['out_size']) == ([64, 48], [32, 24])
  assert os.path.exists(workdir / 'config.json')


def test_the_log_shows_progress_and_no_library_chatter(finished_run):
  _, _, log = finished_run
  assert 'step 1/2 (50%) · ' in log and ' · ETA 0:00:' in log
  assert 'orbax' not in log.lower()  # Its INFO lines: --library_logs=true.
  # TensorFlow's warning of a dataset cache left half read (TFDS caches
  # small splits unless told not to; the image panels read one batch).
  assert 'did not fully read the dataset being cached' not in log


def test_report_prints_a_markdown_table(finished_run):
  workdir, _, _ = finished_run
  out = cli('resizer.report', str(workdir))
  assert out.stdout.startswith('| dataset |')
  assert '| fine_gratings/tiny | resnet_tiny | learned | 64x48 → 32x24 |' in out.stdout


def test_visualize_own_images(finished_run, tmp_path):
  """(The dataset's examples, the default: tests/test_gcs.py, from a bucket;
  bad paths and images: tests/test_visualize.py.)"""
  workdir, _, _ = finished_run
  photo = tmp_path / 'photo.png'
  save_photo(photo, 90, 120)
  out = tmp_path / 'mine.png'
  res = cli('resizer.visualize', f'--workdir={workdir}', f'--out={out}',
            f'--images={photo}')
  assert '1 images' in res.stdout and Image.open(out).size[0] > 400


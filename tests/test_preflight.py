"""The pre-flight compiles the trainer's own steps: on CPU its memory figures
are XLA's analysis of the very program a run compiles; for a TPU slice it
says whether a run fits, and refuses one that does not in one line."""

import importlib.util
import itertools
import json
import os
import subprocess
import sys

import jax
import pytest
import tensorflow_datasets as tfds

import resizer.datasets  # noqa: F401  (registers fine_gratings and ava)
from configs import common, demo
from resizer import input_pipeline, preflight, tasks, train
from tests import tiny_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The TPU compiler's own words for a program over HBM (libtpu 0.0.42.1).
COMPILER_OOM = ('RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total '
                'memory required for HLO temporaries (114.01G) exceeds '
                'available HBM (15.75G).')


# ------------------------------------------------------------ fast: the parts

@pytest.mark.parametrize('threshold, multiple, start', list(itertools.product(
    [0, 3, 8, 9, 40, 41, 100, 1000], [1, 4, 8], [1, 8, 39, 40, 44, 500, 4000])))
def test_largest_batch_is_what_a_scan_finds(threshold, multiple, start):
  calls = []

  def fits(b):
    calls.append(b)
    return b <= threshold

  want = threshold // multiple * multiple
  assert preflight.largest_batch(fits, multiple, start) == want
  assert all(b % multiple == 0 and b > 0 for b in calls)
  if want and start == want:  # A right guess costs two compiles.
    assert len(calls) == 2


def test_a_linear_need_is_guessed_exactly():
  def need(batch):  # 300 MiB of state, 35 MiB per image, refused past 400.
    return None if batch > 400 else (300 + 35 * batch) * 2**20

  limit = 16 * 2**30
  assert preflight.linear_guess(need, 128, 4, limit) == (16 * 1024 - 300) // 35
  # Twice the batch does not compile: half of it is tried instead.
  assert preflight.linear_guess(need, 256, 4, limit) == (16 * 1024 - 300) // 35


def test_the_compilers_out_of_memory_error_is_read_as_figures():
  oom = preflight.out_of_memory(RuntimeError(COMPILER_OOM + '\nmore text'))
  assert (oom.needed_gib, oom.available_gib) == (114.01, 15.75)
  assert str(oom) == COMPILER_OOM
  old_form = 'RESOURCE_EXHAUSTED: ... Used 20.5G of 15.75G hbm. Exceeded.'
  oom = preflight.out_of_memory(RuntimeError(old_form))
  assert (oom.needed_gib, oom.available_gib) == (20.5, 15.75)
  assert preflight.out_of_memory(ValueError('INTERNAL: something else')) is None


def report(**train):
  base = dict(devices=4, accumulate_steps=1, hbm_gib=16, remat='none',
              resizer='learned', eval=dict(fits=True))
  return {**base, 'train': dict(batch=4096, fits=False, **train)}


def test_why_not_says_by_how_much_and_what_to_change():
  line = preflight.why_not(report(total_gib=40.0))
  assert line.startswith('the train step at a global batch of 4096 (4 '
                         'devices) needs 40 GiB per device, over the 16 GiB')
  # Memory about linear in the batch: 4096 * 16 / 40, to a multiple of 4.
  assert '--config.input.batch_size to about 1636 or less' in line
  assert '--config.optim.accumulate_steps=2' in line
  assert '--config.model.remat=resizer' in line
  found = preflight.why_not({**report(total_gib=40.0), 'max_global_batch': 1600})
  assert '--config.input.batch_size=1600 or less' in found
  compiler = preflight.why_not(report(needed_gib=114.01, available_gib=15.75,
                                      compiler=COMPILER_OOM))
  assert 'needs 114.01 GiB of temporaries per device, over the 15.75 GiB' in (
      compiler)
  assert '\n' not in compiler


@pytest.mark.parametrize('dataset, config', [
    ('fine_gratings/tiny', demo.get_config()),
    ('ava/random_split', common.ava_config(None, 'densenet121')),
])
def test_the_label_spec_is_the_datasets_label(dataset, config):
  feature = tfds.builder(dataset).info.features[config.input.label_key]
  spec = tasks.label_spec(config)
  assert spec.shape == tuple(feature.shape)
  assert spec.dtype == feature.np_dtype


def test_the_abstract_batch_is_the_pipelines_batch_on_the_devices(data_dir):
  config = demo.get_config()
  config.input.update(dataset='fine_gratings/tiny', data_dir=str(data_dir),
                      batch_size=16, eval_batch_size=8)
  builder = input_pipeline.get_builder(config.input)
  size = (config.resizer.in_size, config.resizer.in_size)
  mesh = train.make_mesh(jax.devices())
  label = tasks.label_spec(config)
  for evaluation, batch in (
      (False, next(input_pipeline.train_batches(
          builder, config.input, size=size, start_step=0, steps_per_epoch=4,
          local_batch_size=16, seed=0))),
      (True, next(input_pipeline.eval_batches(
          builder, config.input, size=size, local_batch_size=8,
          num_batches=4)))):
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(
        train.AXIS))
    on_devices = {k: jax.make_array_from_process_local_data(sharding, v)
                  for k, v in batch.items()}
    spec = train.abstract_batch(config, len(batch['image']), mesh, label,
                                evaluation=evaluation)
    assert {k: (v.shape, v.dtype, v.sharding) for k, v in spec.items()} == {
        k: (v.shape, v.dtype, v.sharding) for k, v in on_devices.items()}


# ------------------------------------------- slow: the trainer's own program

@pytest.mark.slow
def test_memory_figures_are_those_of_the_program_the_trainer_compiles(
    tmp_path, monkeypatch):
  """The trainer runs (tiny config, 8 CPU devices); its train and eval
  steps, with the arguments of their first call, are compiled again and
  XLA's memory analysis compared with the pre-flight's, which read no
  data."""
  seen = {}
  make_program = train.make_program

  def recording(*args, **kwargs):
    program = make_program(*args, **kwargs)

    def record(name, step):
      def call(*step_args):
        seen.setdefault(name, (step, jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                           sharding=x.sharding), step_args)))
        return step(*step_args)
      return call

    return program._replace(
        train_step=record('train', program.train_step),
        eval_step=record('eval', program.eval_step))

  monkeypatch.setattr(train, 'make_program', recording)
  config = tiny_runs.tiny_config(total_steps=2, eval_every_steps=2,
                                 image_summary_every_steps=0)
  tiny_runs.run(config, tmp_path / 'run')
  monkeypatch.undo()

  report = preflight.check(config, jax.devices(), 1, hbm_gib=None,
                           search_batch=False, log=lambda line: None)
  steps = preflight.Steps(config, jax.devices(), 1)
  for name, batch in (('train', config.input.batch_size),
                      ('eval', config.input.eval_batch_size)):
    step, args = seen[name]
    trainers = preflight.Memory.of(step.lower(*args).compile())
    assert preflight.Memory.of(steps.lower(name, batch).compile()) == trainers
    assert trainers.temp > 0
    row = report[name]
    assert row['temp_mib'] == round(trainers.temp / 2**20, 1)
    assert row['argument_mib'] == round(trainers.argument / 2**20, 1)
    assert row['total_gib'] == round(trainers.total / 2**30, 2)


@pytest.mark.slow
def test_the_largest_batch_that_fits_is_found_by_compiling():
  """On the CPU devices against a made-up memory size: the batch found
  fits, and one multiple of the device count more does not."""
  config = tiny_runs.tiny_config()
  steps = preflight.Steps(config, jax.devices(), 1)
  at_16 = steps.compile('train', 16).memory.total
  hbm_gib = 3 * at_16 / 2**30
  report = preflight.check(config, jax.devices(), 1, hbm_gib=hbm_gib,
                           log=lambda line: None)
  best = report['max_global_batch']
  assert best % 8 == 0 and 16 < best < 8 * 16
  for batch, fits in ((best, True), (best + 8, False)):
    need = steps.compile('train', batch).memory.total
    assert (need <= hbm_gib * 2**30) == fits


# ------------------------------------------- slow: the TPU compiler, here

needs_libtpu = pytest.mark.skipif(
    importlib.util.find_spec('libtpu') is None,
    reason="the TPU compiler: pip install -e '.[tpu-compile]' (CI has it)")
TINY = ['--config=configs/demo.py:backbone=resnet_tiny',
        '--config.input.eval_batch_size=64', '--config.model.dtype=bfloat16']
# Smaller images compile faster, but would fit HBM at any batch that
# compiles in reasonable time: the out-of-memory test keeps the demo's.
SMALL = ['--config.resizer.in_size=48', '--config.resizer.out_size=24']


def preflight_cli(*args):
  env = {k: v for k, v in os.environ.items() if k != 'JAX_PLATFORMS'}
  return subprocess.run([sys.executable, '-m', 'resizer.preflight', *args],
                        cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.mark.slow
@needs_libtpu
@pytest.mark.parametrize('topology, hosts', [('v5litepod-4', 1),
                                             ('v5litepod-16', 4)])
def test_a_run_that_fits_a_tpu_slice_is_reported(topology, hosts):
  result = preflight_cli(*TINY, *SMALL, f'--topology={topology}',
                         '--nosearch_batch',
                         f'--config.input.batch_size={16 * hosts * 4}')
  assert result.returncode == 0, result.stderr[-2000:]
  last = json.loads(result.stdout.strip().splitlines()[-1])
  assert last['fits'] and last['processes'] == hosts
  assert last['devices'] == 4 * hosts and last['device_kind'] == 'TPU v5 lite'
  assert last['train']['per_device_batch'] == 16
  assert 0 < last['train']['total_gib'] < 16 and last['train']['temp_mib'] > 0
  assert last['train_gflops_per_image'] > last['forward_gflops_per_image'] > 0
  assert 'error' not in result.stderr


@pytest.mark.slow
@needs_libtpu
def test_a_run_beyond_hbm_is_refused_in_one_line():
  result = preflight_cli(*TINY, '--topology=v5litepod-4', '--nosearch_batch',
                         '--config.input.batch_size=262144')
  assert result.returncode == 1
  errors = [l for l in result.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and result.stderr.strip().endswith(errors[0])
  assert 'does not fit v5litepod-4' in errors[0]
  assert 'over the 15.75 GiB the TPU compiler can use' in errors[0]
  assert '--config.input.batch_size to about' in errors[0]
  assert json.loads(result.stdout.strip().splitlines()[-1])['fits'] is False


def test_without_libtpu_it_says_how_to_install_it(monkeypatch):
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
  with pytest.raises(preflight.PreflightError, match=r"pip install -c "
                     r"launch/constraints.txt -e '\.\[tpu-compile\]'"):
    preflight.slice_devices(preflight.slices.parse('v4-8'))


def test_config_errors_are_the_trainers():
  config = tiny_runs.tiny_config()
  config.input.batch_size = 12  # Not a multiple of the 8 devices.
  with pytest.raises(ValueError, match='config.input.batch_size=12'):
    preflight.Steps(config, jax.devices(), 1)

"""The benchmark scripts run in a smoke mode and print well-formed results."""

import argparse
import importlib.util
import itertools
import json
import math
import os
import subprocess
import sys

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args):
  """The script in its own process (for those that set up the process:
  XLA flags, TensorFlow's visible devices); (JSON rows, stdout)."""
  out = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', script),
                        *args], cwd=ROOT, capture_output=True, text=True,
                       check=True).stdout
  return [json.loads(l) for l in out.splitlines() if l.startswith('{')], out


def load_module(script):
  spec = importlib.util.spec_from_file_location(
      script[:-3] + '_benchmark', os.path.join(ROOT, 'benchmarks', script))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def run_here(capsys, script, *args):
  """The script's main() in this process, as its command line would call
  it; (the rows it printed as JSON, stdout)."""
  rows = load_module(script).main(list(args))
  out = capsys.readouterr().out
  assert [json.loads(l) for l in out.splitlines() if l.startswith('{')] == (
      json.loads(json.dumps(rows)))
  return rows, out


@pytest.mark.slow
def test_train_step_benchmark_smoke(capsys):
  rows, out = run_here(capsys, 'train_step.py', '--config=configs/demo.py',
                       '--resizers=none:16,learned:32', '--out_size=16',
                       '--model=resnet_tiny', '--batch_size=8',
                       '--dtype=float32', '--steps=1', '--repeats=2')
  assert [r['resizer'] for r in rows] == ['none', 'learned']
  for r in rows:
    assert r['images_per_sec'] > 0 and r['step_ms_min'] <= r['step_ms_median']
    assert r['train_gflops_per_image'] > 0 and r['compile_sec'] > 0
  # The learned resizer's step costs more FLOPs than the plain one.
  assert rows[1]['train_gflops_per_image'] > rows[0]['train_gflops_per_image']
  assert rows[0]['ratio'] == 1.0 and rows[1]['ratio'] > 0
  assert '| ratio |' in out.splitlines()[-4]  # The table's header.


@pytest.mark.slow
def test_memory_only_reports_xla_memory_and_the_largest_batch_that_fits(
    capsys):
  # The learned resizer without and with rematerialisation, at a size where
  # batch 8 fits and 16 does not: the search (specified on its own below)
  # then compiles one step per row besides the reported one.
  rows, out = run_here(capsys, 'train_step.py', '--config=configs/demo.py',
                       '--resizers=learned:32:none,learned:32:resizer',
                       '--out_size=16', '--model=resnet_tiny',
                       '--batch_size=8', '--dtype=float32', '--memory_only',
                       '--fit_hbm_gib=0.001', '--fit_multiple=8')
  assert [(r['resizer'], r['remat']) for r in rows] == [
      ('learned', 'none'), ('learned', 'resizer')]
  assert 'max batch @0.001 GiB' in out
  # Recomputing the resizer's activations keeps fewer of them.
  assert rows[1]['temp_mib_per_image'] < rows[0]['temp_mib_per_image']
  for r in rows:
    # Per device program: each device's share of the batch.
    per_device_batch = 8 // r['devices']
    assert r['temp_mib_per_image'] * per_device_batch == pytest.approx(
        r['temp_mib'], abs=0.1)
    assert r['max_batch']['0.001'] == 8
  # The reported answer, checked by compiling at it and one step past.
  r = rows[-1]
  bench = load_module('train_step.py')
  config = bench.make_config(argparse.Namespace(
      config='configs/demo.py', out_size=16, model='resnet_tiny',
      dtype='float32', remat=None, conv_impl='cpu_forms'),
      f"{r['resizer']}:{r['in_size'][0]}:{r['remat']}")
  for batch, fits in ((8, True), (16, False)):
    compiled = bench.compile_step(config, batch, jax.devices(),
                                  execute=False)[0]
    total = bench.memory(compiled, batch, jax.device_count())['total_mib']
    assert (total <= 0.001 * 1024) == fits


def test_the_largest_batch_search_finds_what_trying_every_batch_finds():
  """benchmarks/train_step.py's doubling-then-bisection search, against a
  scan of every multiple in turn, for needs that grow smoothly, in steps,
  or exceed the memory at once; it asks only for multiples, and at most
  2 log2(answer / multiple) + 2 of them (each one a compile)."""
  largest_batch = load_module('train_step.py').largest_batch
  growths = [lambda b: 0.3 + 0.05 * b, lambda b: 0.5 * (b // 24 + 1),
             lambda b: 4.0 + b]
  for needs, hbm_mib, (multiple, start) in itertools.product(
      growths, (0.25, 1.0, 1.75, 3.0, 10.0), ((8, 8), (8, 1), (16, 40),
                                              (3, 7))):
    hbm_gib = hbm_mib / 1024
    scan = 0
    for batch in itertools.count(multiple, multiple):
      if needs(batch) > hbm_gib * 1024:
        break
      scan = batch
    asked = []
    found = largest_batch(lambda b: asked.append(b) or needs(b), hbm_gib,
                          multiple, start)
    case = (hbm_mib, multiple, start)
    assert found == scan, case
    assert all(b % multiple == 0 for b in asked), (case, asked)
    top = max(found, start, multiple) / multiple
    assert len(set(asked)) <= 2 * math.log2(top) + 2, (case, asked)


@pytest.mark.parametrize('flags, message', [
    (['--topology=v5e:2x2'], '--topology needs --memory_only'),
    (['--topology=v5e:2x2', '--memory_only'], 'libtpu'),
])
def test_a_tpu_topology_without_its_requirements_is_refused_in_one_line(
    flags, message, monkeypatch):
  """Compiling for a TPU topology here needs --memory_only (nothing can
  run) and libtpu, which is hidden here. The refusal is sys.exit's
  message: Python prints it as the last line."""
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: (
      None if name == 'libtpu' else find_spec(name, *a)))
  with pytest.raises(SystemExit) as refused:
    load_module('train_step.py').main(['--config=configs/demo.py',
                                   '--resizers=none:32', '--out_size=32',
                                   *flags])
  assert isinstance(refused.value.code, str)
  assert message in refused.value.code and '\n' not in refused.value.code


@pytest.mark.slow
def test_input_pipeline_benchmark_smoke():
  rows, _ = run('input_pipeline.py', '--size=32', '--batch_size=4',
                '--num_images=8', '--seconds=0.5',
                '--consumer_images_per_sec=100')
  r, = rows
  assert r['images_per_sec_one_core'] > 0 and r['cores_needed'] > 0


@pytest.mark.slow
def test_resizer_parts_benchmark_smoke(capsys):
  rows, out = run_here(capsys, 'resizer_parts.py', '--in_size=32',
                       '--out_size=16', '--batch_size=2', '--repeats=2')
  assert [r['stage'] for r in rows] == [
      'conv_in', 'input_size', 'res_blocks', 'conv_to_image', 'resizer']
  assert all(r['ms_median'] > 0 for r in rows)
  assert rows[-1]['share_of_resizer'] == 1.0
  assert '| share of resizer |' in out


@pytest.mark.slow
def test_profile_step_smoke():
  rows, out = run('profile_step.py', '--config=configs/demo.py',
                  '--resizer=learned:32', '--out_size=16',
                  '--model=resnet_tiny', '--batch_size=8', '--dtype=float32',
                  '--steps=1', '--top=5')
  r, = rows
  assert r['resizer'] == 'learned' and r['step_ms'] > 0
  # Both modules' operations are found in the trace and timed.
  assert r['op_ms_per_step']['resizer'] > 0
  assert r['op_ms_per_step']['backbone'] > 0
  table = [l for l in out.splitlines() if l.startswith('| ') and 'ms/step' not in l]
  assert len(table) == 5


@pytest.mark.slow
def test_the_prepared_device_check_runs_on_cpu():
  """benchmarks/on_device.sh, the first thing to run on a GPU or TPU host,
  with a tiny model on the test's CPU devices."""
  env = {**os.environ, 'PYTHON': sys.executable, 'CONFIG': 'configs/demo.py',
         'RESIZERS': 'none:16,learned:32', 'OUT_SIZE': '16',
         'MODEL': 'resnet_tiny', 'DTYPE': 'float32', 'PER_DEVICE_BATCH': '1',
         'STEPS': '1', 'REPEATS': '2'}
  out = subprocess.run(['bash', 'benchmarks/on_device.sh'], cwd=ROOT, env=env,
                       capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.splitlines()[0] == '8 x cpu (cpu)'
  rows = [json.loads(l) for l in out.stdout.splitlines() if l.startswith('{')]
  assert [(r['resizer'], r['batch_size']) for r in rows] == [
      ('none', 8), ('learned', 8)]
  for r in rows:
    assert r['images_per_sec'] > 0 and r['compiled_memory_gib'] > 0
  assert rows[0]['ratio'] == 1.0 and rows[1]['ratio'] > 0
  assert '| compiled GiB |' in out.stdout

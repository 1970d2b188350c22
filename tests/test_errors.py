"""A user's mistake gets one `error:` line that names the key, file or value,
before any work and without writing anything; `--help` exits 0. Each case
runs the tool as a user would, in a process of its own."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # a process per case

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = [
    # (tool, arguments ({tmp}: the test's empty folder), text of the error)
    ('main', ['--config=configs/demo.py', '--config.optim.learning_rat=0.1'],
     "--config.optim.learning_rat: the config has no key 'learning_rat'; "
     "did you mean 'learning_rate'?"),
    ('main', ['--config=configs/nope.py'],
     '--config=configs/nope.py: no such config file'),
    ('main', ['--config=configs/demo.py', '--config.input.batch_size=abc'],
     "--config.input.batch_size=abc: invalid literal for int()"),
    ('main', ['--config=configs/demo.py:resizer=foo'],
     "config argument resizer='foo' is invalid"),
    ('main', ['--config=configs/demo.py:resizer=none',
              '--config.resizer.antialias=true'],
     'config.resizer.antialias=True does nothing'),
    ('main', ['--config=configs/demo.py', '--config.resizer.in_size=0'],
     'in_size'),
    ('main', ['--config=configs/demo.py:resizer=none',
              '--config.input.interpolation=bogus'],
     "config.input.interpolation='bogus' is invalid"),
    ('main', ['--config=configs/imagenet_densenet.py',
              '--config.input.data_dir={tmp}/tfds'],
     'Prepare it with `tfds build imagenet2012'),
    ('main', ['--config=configs/demo.py', '--workdir={tmp}/file'],
     'is a file; give a directory'),
    ('main', ['--workdir={tmp}/run'], 'flag --config=None'),
    ('main', ['--config=configs/demo.py:foo=1'],
     "config argument 'foo=1' is invalid; expected key=value with key one of"),
    ('main', ['--config=configs/demo.py', 'runs/x'],
     "unexpected arguments ['runs/x']: this tool takes only flags"),
    # Refused after JAX has started (the batch is checked against the
    # devices): no TPU runtime warnings on a machine without one.
    ('main', ['--config=configs/demo.py', '--config.input.batch_size=0'],
     'config.input.batch_size=0 is invalid; expected an integer >= 1'),
    ('summary', ['--config=configs/demo.py:resizer=learned,res=abc'],
     "config argument 'res=abc' is invalid"),
    ('summary', ['--config=configs/demo.py:resizer=none',
                 '--config.resizer.antialias=true'],
     'config.resizer.antialias=True does nothing'),
    ('summary', ['--config=configs/demo.py', '--config.optim.learning_rat=3'],
     "did you mean 'learning_rate'?"),
    ('compare', ['--config=configs/demo.py:resizer=foo', '--print_only'],
     'drop resizer= from --config'),
    ('compare', ['--config=configs/demo.py', '--print_only',
                 '--set=resizer.antialias=true', '--learned=', '--fixed=area'],
     'run none_area_32x32: config.resizer.antialias=True does nothing'),
    ('compare', ['--config=configs/demo.py', '--print_only', '--fixed=bogus'],
     "config.input.interpolation='bogus' is invalid"),
    ('compare', ['--config=configs/demo.py', '--set=input.batch_size=abc'],
     '--set input.batch_size=abc: expected an integer'),
    ('compare', ['--config=configs/demo.py', '--config.optim.learning_rate=1'],
     '--set optim.learning_rate=VALUE'),
    ('preflight', ['--config=configs/demo.py:resizer=none',
                   '--config.resizer.antialias=true'],
     'config.resizer.antialias=True does nothing'),
    ('compare', ['--config=configs/demo.py', '--print_only', '--seeds=0'],
     'flag --seeds=0: 0 is not a positive integer'),
    ('compare', ['--config=configs/demo.py', '--print_only',
                 '--flops_margin=-1'],
     'flag --flops_margin=-1: -1.0 is not a non-negative number'),
    ('preflight', ['--config=configs/demo.py', '--topology=v3-8'],
     "'v3-8' is not a Cloud TPU accelerator type"),
    # Without libtpu the line names its install command instead.
    ('preflight', ['--config=configs/demo.py', '--topology=v5e:9x9'],
     '--topology=v5e:9x9'),
    ('visualize', ['--workdir={tmp}/nope', '--out={tmp}/v.png'],
     'nope/config.json is missing: is'),
    ('visualize', ['--workdir={tmp}/nope', '--out={tmp}/nodir/v.png'],
     'nodir/v.png: the folder'),
    ('visualize', ['--workdir={tmp}/nope', '--images={tmp}/empty',
                   '--out={tmp}/v.png'],
     'empty: no image files in it'),
    ('visualize', ['--workdir={tmp}/empty', '--out={tmp}/v.png'],
     'empty/config.json is missing: is'),
    ('report', ['{tmp}/nope', '--out={tmp}/nodir/r.md'],
     'nodir/r.md: the folder'),
    ('report', [], 'give one or more run directories'),
    ('report', ['{tmp}/nope'], 'nope/results.json: missing'),
    ('export', ['--workdir={tmp}/nope'], 'flag --out=None'),
    ('export', ['--workdir={tmp}/nope', '--out={tmp}/e'],
     'nope/config.json is missing'),
    ('import_weights', ['--model=resnet50', '--source={tmp}/garbage.pth',
                        '--out={tmp}/w'],
     'garbage.pth: not a torch state dict of tensors'),
    ('import_weights', ['--model=resnet5', '--source={tmp}/garbage.pth',
                        '--out={tmp}/w'],
     "--model='resnet5' is invalid; weights can be imported for"),
    ('import_weights', ['--model=resnet50', '--source={tmp}/nope.pth',
                        '--out={tmp}/w'],
     'nope.pth\' does not exist'),
    ('import_weights', ['--model=resnet50', '--source={tmp}/file',
                        '--out={tmp}/w'],
     'cannot tell the format from the extension'),
]
MADE = ['empty', 'file', 'garbage.pth']  # What each case starts with.
NEEDS_WORKDIR = ('main', 'compare')


def tool(name, args, tmp_path):
  args = [a.replace('{tmp}', str(tmp_path)) for a in args]
  if name in NEEDS_WORKDIR and not any(a.startswith('--workdir') for a in args):
    args.append(f'--workdir={tmp_path}/run')
  return subprocess.run([sys.executable, '-m', f'resizer.{name}', *args],
                        cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize('name, args, says', CASES,
                         ids=[f'{c[0]}-{i}' for i, c in enumerate(CASES)])
def test_a_mistake_is_one_error_line_and_nothing_is_written(
    tmp_path, name, args, says):
  (tmp_path / 'file').write_text('not a workdir')
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'garbage.pth').write_bytes(bytes(range(256)) * 4)
  result = tool(name, args, tmp_path)
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert result.returncode == 1, result.stderr[-3000:]
  assert len(lines) <= 3 and lines[-1].startswith('error: '), result.stderr
  assert says in lines[-1]
  assert 'Traceback' not in result.stderr
  # Never the advice to load pickled code (torch's own, for a bad file).
  assert 'weights_only=False' not in result.stderr
  assert sorted(os.listdir(tmp_path)) == MADE  # Nothing written.


@pytest.mark.parametrize('name', ['main', 'summary', 'compare', 'preflight',
                                  'visualize', 'report', 'export',
                                  'import_weights'])
def test_help_exits_0_with_the_tools_usage_and_flags(name):
  result = subprocess.run([sys.executable, '-m', f'resizer.{name}', '--help'],
                          cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  assert 'python -m resizer.' in result.stdout  # The docstring's usage.
  assert '\nFlags:\n' in result.stdout and '  --' in result.stdout

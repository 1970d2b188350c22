"""Every key has one home: `configs/common.base_config` sets it, nothing in
the code writes another default for it, and `run_record` says what a resume
does when it changes."""

import glob
import importlib.util
import os
import re

import pytest

from configs import common
from resizer import run_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(f for f in glob.glob(os.path.join(ROOT, 'configs/*.py'))
                      if not f.endswith(('common.py', '__init__.py')))


def _module(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def every_config():
  """Every experiment config, with every resizer choice its arguments take."""
  configs = [common.base_config()]
  for path in CONFIG_FILES:
    module = _module(path)
    configs.append(module.get_config(None))
    for choice in common.RESIZER_CHOICES:
      try:
        configs.append(module.get_config(f'resizer={choice}'))
      except ValueError:  # A config without the resizer= argument.
        break
  return configs


def keys_of_every_config() -> set[str]:
  return {k for c in every_config() for k in run_record._flat(c)}


def test_every_config_key_is_classified_for_a_resume_once():
  """A new key fails here until it is put in run_record.TRAINING_KEYS or
  FREE_KEYS (and ADDED_KEYS: older runs lack it)."""
  training, free = set(run_record.TRAINING_KEYS), set(run_record.FREE_KEYS)
  assert not training & free
  keys = keys_of_every_config()
  assert keys - training - free == set(), 'unclassified for a resume'
  assert (training | free) - keys == set(), 'classified, but no config has it'


def test_an_added_key_reads_as_what_earlier_runs_computed_with():
  """ADDED_KEYS fill a record that predates a key with base_config's value:
  the default is the old behaviour, in one place."""
  base = run_record._flat(common.base_config())
  for key, value in run_record.ADDED_KEYS.items():
    assert key in run_record.TRAINING_KEYS + run_record.FREE_KEYS
    assert base[key] == value, key


def test_the_experiment_configs_set_no_key_base_config_lacks():
  """base_config sets every key; an experiment only changes values (the
  resizer block's fields come from common.resizer_config, which
  base_config uses)."""
  base = set(run_record._flat(common.base_config()))
  resizer_fields = set(common.resizer_config('learned', 8, 8))
  for config in every_config():
    extra = set(run_record._flat(config)) - base
    assert {k for k in extra
            if k.split('.')[0] != 'resizer'
            or k.split('.')[1] not in resizer_fields} == set()


# A default written in code for a config block (config, cfg, a block's own
# name, or a tool's args): x.get('key', default), getattr(x, 'key', default).
_BLOCK = r"(?:config|cfg|inp|optim|resizer|model|loss|init_from|args)[\w.\[\]']*"
_DEFAULT = re.compile(
    rf"""(?:\b{_BLOCK}\.get\(|getattr\({_BLOCK},\s*)['"](\w+)['"]\s*,""")


@pytest.mark.parametrize('folder', ['resizer', 'benchmarks'])
def test_no_code_writes_a_default_for_a_config_key(folder):
  """Code reads config keys as they are (config.key, cfg['key']): a default
  anywhere but configs/ would be a second home, and would hide a missing
  key instead of naming it."""
  leaves = {k.rsplit('.', 1)[-1] for k in keys_of_every_config()}
  found = []
  for path in glob.glob(os.path.join(ROOT, folder, '**/*.py'), recursive=True):
    with open(path) as f:
      for number, line in enumerate(f, 1):
        found += [f'{os.path.relpath(path, ROOT)}:{number}: {line.strip()}'
                  for key in _DEFAULT.findall(line) if key in leaves]
  assert found == []

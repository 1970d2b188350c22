"""The package as a library: every module imports alongside every other in
one process. The command-line tools define their flags only when run as
one (`if __name__ == '__main__'`), so two tools' `--workdir` or `--out`
never collide, and a tool accepts no flag of a module it imports. The one
exception is resizer.main, the trainer's entry point, which a multi-process
launcher may import to call its main() (tests/test_multiprocess.py)."""

import importlib
import pkgutil

from absl import flags

import resizer


def test_every_module_imports_together_and_only_main_defines_flags():
  names = [m.name for m in pkgutil.walk_packages(resizer.__path__, 'resizer.')]
  assert {'resizer.compare', 'resizer.report', 'resizer.visualize',
          'resizer.export', 'resizer.main'} <= set(names)
  for name in names:
    importlib.import_module(name)
  defining = {module for module in flags.FLAGS.flags_by_module_dict()
              if module.startswith('resizer.')}
  assert defining <= {'resizer.main'}, defining


def test_the_tools_import_neither_jax_nor_tensorflow_before_their_help():
  """`python -m resizer.X --help` answers before JAX or TensorFlow load
  (seconds each): the tools import them where they are used."""
  import subprocess
  import sys
  tools = ['main', 'summary', 'compare', 'preflight', 'report', 'export',
           'visualize', 'import_weights']
  code = ('import sys; ' + '; '.join(f'import resizer.{t}' for t in tools)
          + "; print(sorted(m for m in ('jax', 'tensorflow', 'flax', "
          "'matplotlib') if m in sys.modules))")
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True).stdout
  assert out.strip() == '[]'


def imports_of(module: str) -> set[str]:
  """The modules `module`'s source imports (at any depth of its code)."""
  import ast
  import os
  path = os.path.join(os.path.dirname(resizer.__file__),
                      *module.split('.')[1:]) + '.py'
  names = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      names |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
      names |= {f'{node.module}.{a.name}' for a in node.names} | {node.module}
  return names


def test_checkpoints_hold_checkpoint_io_only():
  """What a workdir holds besides checkpoints (config.json, results.json,
  imported.json) has one home, run_record: checkpoints.py reads neither it
  nor a config file, and the config checks need no checkpoint code."""
  assert not {n for n in imports_of('resizer.checkpoints')
              if n.startswith(('resizer.run_record', 'configs'))}
  assert 'resizer.checkpoints' not in imports_of('resizer.config_checks')
  assert 'resizer.run_record' in imports_of('resizer.config_checks')

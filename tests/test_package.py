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

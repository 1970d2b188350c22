"""The README and docs point at what exists: every file they name, every
link, every `python -m resizer.X` / benchmark flag and every config key they
set is checked against the code."""

import glob
import os
import re
import shlex

import pytest

from configs import common
from resizer import run_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ['README.md', 'benchmarks/README.md',
         *sorted(os.path.relpath(p, ROOT)
                 for p in glob.glob(os.path.join(ROOT, 'docs', '*.md')))]
# absl's own flags, which every tool takes.
ABSL_FLAGS = {'help', 'helpfull', 'helpshort', 'verbosity', 'v',
              'logtostderr', 'alsologtostderr', 'log_dir'}
# Paths of the repository as the pages write them.
REPO_PATH = re.compile(
    r'(?<![\w/.-])((?:configs|resizer|benchmarks|launch|examples|tests|docs|'
    r'\.ci)/[\w./{},*-]*[\w*}])')


def read(page: str) -> str:
  with open(os.path.join(ROOT, page)) as f:
    return f.read()


def code_of(page: str) -> list[str]:
  """The page's code: fenced blocks and inline spans, with shell line
  continuations joined."""
  text = read(page)
  blocks = re.findall(r'```\w*\n(.*?)```', text, re.S)
  inline = re.findall(r'`([^`\n]+(?:\n[^`\n]+)?)`',
                      re.sub(r'```\w*\n.*?```', '', text, flags=re.S))
  # An inline span wrapped over two lines is one command.
  return ([b.replace('\\\n', ' ') for b in blocks]
          + [i.replace('\n', ' ') for i in inline])


def commands(page: str) -> list[list[str]]:
  """Every command of the page's code, as words."""
  out = []
  for code in code_of(page):
    for line in re.split(r'\n|&&|;|\|', code.replace('\n', ' \n')):
      try:
        words = shlex.split(line, comments=True)
      except ValueError:
        words = line.split()
      if words:
        out.append(words)
  return out


def defined_flags(path: str) -> set[str]:
  """The flags a tool or script defines (absl or argparse), from its source."""
  source = read(path)
  names = set(re.findall(r"DEFINE_\w+\(\s*'(\w+)'", source))
  names |= set(re.findall(r"add_argument\(\s*'--(\w+)'", source))
  return names


def config_keys() -> set[str]:
  return set(run_record._flat(common.base_config()))


def expand(path: str) -> list[str]:
  """A path with {a,b} alternatives or * as the paths it names."""
  match = re.search(r'\{([^}]*)\}', path)
  if match:
    return [p for alt in match[1].split(',')
            for p in expand(path[:match.start()] + alt + path[match.end():])]
  return [path]


@pytest.mark.parametrize('page', PAGES)
def test_every_file_a_page_names_exists(page):
  missing = []
  for code in code_of(page):
    for path in REPO_PATH.findall(code):
      for one in expand(path.rstrip('.')):
        folder, _, name = one.rpartition('/')
        module = f'{folder}/{name.split(".")[0]}.py'  # configs/common.X
        if not (glob.glob(os.path.join(ROOT, one))
                or glob.glob(os.path.join(ROOT, one + '.*'))  # A prefix.
                or os.path.exists(os.path.join(ROOT, module))):
          missing.append(one)
  assert missing == []


@pytest.mark.parametrize('page', PAGES)
def test_every_link_of_a_page_resolves(page):
  folder = os.path.dirname(os.path.join(ROOT, page))
  broken = []
  for target in re.findall(r'\]\(([^)\s]+)\)', read(page)):
    if re.match(r'\w+://|mailto:', target):
      continue
    path, _, anchor = target.partition('#')
    full = os.path.normpath(os.path.join(folder, path)) if path else (
        os.path.join(ROOT, page))
    if not os.path.exists(full):
      broken.append(target)
    elif anchor and full.endswith('.md'):
      headings = re.findall(r'^#+ (.*)$', open(full).read(), re.M)
      slugs = {re.sub(r'[^\w\- ]', '', h.lower()).replace(' ', '-')
               for h in headings}
      if anchor not in slugs:
        broken.append(target)
  assert broken == []


@pytest.mark.parametrize('page', PAGES)
def test_every_flag_and_config_key_a_command_sets_exists(page):
  keys = config_keys()
  leaves_of = {k.split('.')[0] for k in keys} | keys
  unknown = []
  for words in commands(page):
    tool = None
    for i, word in enumerate(words):
      if word == '-m' and i + 1 < len(words) and words[i + 1].startswith(
          'resizer.'):
        tool = os.path.join('resizer', words[i + 1][len('resizer.'):] + '.py')
      elif re.fullmatch(r'(benchmarks|examples)/\w+\.py', word):
        tool = word
    if tool is None or not os.path.exists(os.path.join(ROOT, tool)):
      continue
    flags = defined_flags(tool) | ABSL_FLAGS
    for word in words:
      if not word.startswith('--'):
        continue
      name = word[2:].split('=')[0]
      if name.startswith('config.'):
        key = name[len('config.'):]
        if key not in leaves_of and not any(
            k.startswith(key + '.') for k in keys):
          unknown.append(f'{tool}: {word}')
      elif name not in flags and name.removeprefix('no') not in flags:
        unknown.append(f'{tool}: {word}')
  assert unknown == []


def test_the_checks_see_the_commands_they_check():
  """The parsing above finds the tools the pages run (a regex that matched
  nothing would pass every check)."""
  tools = {w for page in PAGES for words in commands(page) for w in words
           if w.startswith('resizer.')}
  assert {'resizer.main', 'resizer.compare', 'resizer.report',
          'resizer.preflight', 'resizer.import_weights',
          'resizer.export'} <= tools
  files = {p for page in PAGES for code in code_of(page)
           for p in REPO_PATH.findall(code)}
  assert 'configs/demo.py' in files and 'launch/tpu_vm.sh' in files

"""The README's "resizer in your own model" block runs and prints what it
says it prints."""

import contextlib
import io
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_block(heading: str) -> str:
  text = open(os.path.join(ROOT, 'README.md')).read()
  section = text.split(heading, 1)[1]
  return re.search(r'```python\n(.*?)```', section, re.S).group(1)


@pytest.mark.slow
def test_the_library_example_runs_and_prints_its_comments():
  code = readme_block('## The resizer in your own model')
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(code, 'README.md', 'exec'), {})  # pylint: disable=exec-used
  promised = [c.strip() for c in re.findall(r'print\(.*\)\s*# (.*)', code)]
  assert out.getvalue().splitlines() == promised == [
      '12,035 resizer parameters', '(2, 10)']

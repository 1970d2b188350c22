"""The one path type for everything a user names: a local path or a URL of a
store such as `gs://bucket/dir`.

Every file the package reads or writes on a user's behalf (workdirs,
warm-start sources, export and import outputs, reports, figures) goes
through `etils.epath`, as Orbax itself does, so a `gs://` workdir is a
bucket prefix and never `<cwd>/gs:/...` (which `os.path.abspath` would
make of it).
"""

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

from etils import epath

PathLike = str | os.PathLike


def is_url(path: PathLike) -> bool:
  """Whether `path` names a store by URL (gs://, s3://, ...)."""
  return '://' in os.fspath(path)


def resolve(path: PathLike) -> epath.Path:
  """`path` as an epath.Path: a URL unchanged, a local path with `~`
  expanded and made absolute (Orbax wants absolute directories)."""
  path = os.fspath(path)
  if is_url(path):
    return epath.Path(path)
  return epath.Path(os.path.abspath(os.path.expanduser(path)))


def write_text_atomic(path: PathLike, text: str) -> None:
  """Writes `text` so that readers see the old file or the new one, never a
  part: a temporary file renamed over `path` (an object store's upload is
  itself atomic; its rename is a copy and a delete)."""
  path = resolve(path)
  tmp = path.parent / f'.{path.name}.tmp'
  try:
    tmp.write_text(text)
  except OSError as e:
    # A write that fails after the open (a full disk) names no file: say
    # which, and leave no partial temporary file behind.
    tmp.unlink(missing_ok=True)
    raise OSError(e.errno, f'{e.strerror}: cannot write {path}') from e
  tmp.replace(path)


@contextlib.contextmanager
def local_copy(path: PathLike) -> Iterator[str]:
  """A local file name for `path`, for readers that need one (h5py, Keras,
  torch): the path itself when local, else a temporary copy."""
  path = resolve(path)
  if not is_url(path):
    yield os.fspath(path)
    return
  with tempfile.TemporaryDirectory() as tmp:
    local = os.path.join(tmp, path.name)
    with path.open('rb') as src, open(local, 'wb') as dst:
      shutil.copyfileobj(src, dst)
    yield local

"""`ava`: the AVA aesthetic-quality dataset (Murray et al., CVPR 2012), from a
manual directory.

Expected in the manual directory (`<data_dir>/downloads/manual/` or
`config.input.manual_dir`):

  AVA.txt            one image a line, space separated: index, image id, the
                     vote counts for scores 1..10 (10 columns), two semantic
                     tag ids (0 when missing), challenge id: 15 columns
  images/<id>.jpg    the images
  train_ids.txt, test_ids.txt   (for the 'official' config only) image ids,
                     one a line, of the fixed 235,599 / 19,930 split

Configs: 'random_split' (default) is a seeded 80/20 split of the usable rows,
the protocol of NIMA and MaxViT; 'official' uses the id lists.

Every row is checked before anything is written. Rows that cannot be
trusted are skipped, never guessed: wrong column count, non-integer fields,
zero votes, duplicate ids, and images that are missing, empty, truncated or
undecodable. Images that decode but are not plain JPEGs (CMYK JPEGs, PNGs
named .jpg, ...) are kept, re-encoded as RGB JPEG (quality 95), and listed.
Everything skipped or re-encoded is counted and listed in
`preparation_report.json` next to the prepared data, and summarised on the
console.
"""

import collections
import concurrent.futures
import io
import json
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

from resizer import paths

NUM_BINS = 10
NUM_COLUMNS = 15
RANDOM_SPLIT_SEED = 0
TEST_FRACTION = 0.2
REPORT_NAME = 'preparation_report.json'
MANUAL_DIR_LAYOUT = __doc__[__doc__.index('Expected'):__doc__.index('Configs:')]


class AvaFormatError(ValueError):
  """The manual directory is not in the AVA layout."""


def parse_row(line: str) -> tuple[dict | None, str | None]:
  """(example fields, None) for a good AVA.txt row, else (None, reason)."""
  parts = line.split()
  if len(parts) != NUM_COLUMNS:
    return None, f'{len(parts)} columns instead of {NUM_COLUMNS}'
  try:
    values = [int(p) for p in parts]
  except ValueError:
    return None, 'a field is not an integer'
  counts = np.asarray(values[2:2 + NUM_BINS], np.int64)
  if (counts < 0).any():
    return None, 'negative vote count'
  if counts.sum() == 0:
    return None, 'zero votes'
  distribution = (counts / counts.sum()).astype(np.float32)
  return dict(
      image_id=values[1],
      rating_counts=counts.astype(np.int32),
      rating_distribution=distribution,
      mean_score=np.float32(np.dot(distribution, np.arange(1, NUM_BINS + 1))),
      semantic_tags=np.asarray(values[12:14], np.int32),
      challenge_id=np.int32(values[14]),
  ), None


def _image_id_or_none(line: str) -> int | None:
  """The image id of a bad row when it can still be read, for the report."""
  parts = line.split()
  try:
    return int(parts[1])
  except (IndexError, ValueError):
    return None


def check_image(path: paths.PathLike
                ) -> tuple[bytes | None, str | None, str | None]:
  """(bytes to store, problem, note): problem set when the image is unusable;
  note set when it was re-encoded."""
  path = paths.resolve(path)
  if not path.exists():
    return None, 'missing image', None
  data = path.read_bytes()
  if not data:
    return None, 'empty file', None
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()  # Decodes fully: a truncated file raises here.
      fmt, mode = im.format, im.mode
      if fmt == 'JPEG' and mode in ('RGB', 'L'):
        return data, None, None
      rgb = im.convert('RGB')
  except Exception as e:  # PIL raises many types for bad files.
    return None, f'undecodable image ({type(e).__name__}: {e})', None
  out = io.BytesIO()
  rgb.save(out, 'JPEG', quality=95)
  return out.getvalue(), None, f're-encoded from {fmt} {mode}'


class Ava(tfds.core.GeneratorBasedBuilder):
  """AVA from a manual directory; see the module docstring."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name='random_split',
                              description='Seeded random 80/20 split.'),
      tfds.core.BuilderConfig(name='official',
                              description='The fixed train/test id lists.'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DIR_LAYOUT

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description='AVA aesthetic ratings (10 score bins).',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3),
                                         encoding_format='jpeg'),
            'rating_counts': tfds.features.Tensor(shape=(NUM_BINS,),
                                                  dtype=np.int32),
            'rating_distribution': tfds.features.Tensor(shape=(NUM_BINS,),
                                                        dtype=np.float32),
            'mean_score': tfds.features.Scalar(dtype=np.float32),
            'image_id': tfds.features.Scalar(dtype=np.int64),
            'semantic_tags': tfds.features.Tensor(shape=(2,), dtype=np.int32),
            'challenge_id': tfds.features.Scalar(dtype=np.int32),
        }),
    )

  def _split_generators(self, dl_manager):
    try:
      manual = paths.resolve(dl_manager.manual_dir)
    except AssertionError:  # TFDS's own check: missing or empty.
      raise AvaFormatError(
          f'AVA manual directory {dl_manager._manual_dir} does not exist or is '
          f'empty. Expected there:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}') from None
    ava_txt = manual / 'AVA.txt'
    if not ava_txt.is_file():
      raise AvaFormatError(f'{ava_txt} is missing. Expected in {manual}: '
                           f'{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    rows, skipped, reencoded = self._scan(manual, ava_txt)
    if self.builder_config.name == 'official':
      splits, unlisted = self._official_split(manual, rows, skipped)
    else:
      splits, unlisted = self._random_split(rows), 0
    self._write_report(ava_txt, rows, skipped, reencoded, splits, unlisted)
    return {name: self._generate_examples(examples)
            for name, examples in splits.items()}

  def _scan(self, manual: str, ava_txt: str):
    """Parses every row and checks every image, in parallel."""
    rows, skipped, seen = [], [], set()
    with ava_txt.open() as f:
      for line_no, line in enumerate(f, 1):
        if not line.strip():
          continue
        fields, problem = parse_row(line)
        if fields is None:
          skipped.append(dict(line=line_no, image_id=_image_id_or_none(line),
                              reason=problem))
        elif fields['image_id'] in seen:
          skipped.append(dict(line=line_no, image_id=fields['image_id'],
                              reason='duplicate image id'))
        else:
          seen.add(fields['image_id'])
          rows.append((line_no, fields))
    files = [manual / 'images' / f"{r['image_id']}.jpg" for _, r in rows]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
      checks = list(pool.map(check_image, files))
    good, reencoded = [], []
    for (line_no, fields), path, (data, problem, note) in zip(rows, files,
                                                              checks):
      if problem:
        skipped.append(dict(line=line_no, image_id=fields['image_id'],
                            reason=f'{problem}: {path}'))
        continue
      if note:
        reencoded.append(dict(line=line_no, image_id=fields['image_id'],
                              note=note))
      good.append({**fields, 'image': data})
    return good, skipped, reencoded

  def _random_split(self, rows):
    order = np.random.default_rng(RANDOM_SPLIT_SEED).permutation(len(rows))
    num_test = int(round(TEST_FRACTION * len(rows)))
    test = set(order[:num_test].tolist())
    return {'train': [r for i, r in enumerate(rows) if i not in test],
            'test': [r for i, r in enumerate(rows) if i in test]}

  def _official_split(self, manual, rows, skipped):
    by_id = {r['image_id']: r for r in rows}
    splits, listed = {}, set()
    for split in ('train', 'test'):
      path = manual / f'{split}_ids.txt'
      if not path.is_file():
        raise AvaFormatError(
            f"{path} is missing: the 'official' config needs train_ids.txt and "
            "test_ids.txt (one image id a line); use 'ava/random_split' without them.")
      with path.open() as f:
        ids = [int(os.path.splitext(l.strip())[0]) for l in f if l.strip()]
      listed.update(ids)
      splits[split] = [by_id[i] for i in ids if i in by_id]
      for i in ids:
        if i not in by_id:
          skipped.append(dict(line=None, image_id=i,
                              reason=f'listed in {split}_ids.txt but not usable'))
    return splits, len([i for i in by_id if i not in listed])

  def _write_report(self, ava_txt, rows, skipped, reencoded, splits, unlisted):
    reasons = collections.Counter(s['reason'].split(':')[0] for s in skipped)
    report = dict(
        source=str(ava_txt), config=self.builder_config.name,
        prepared={k: len(v) for k, v in splits.items()},
        usable_rows=len(rows), skipped_count=len(skipped),
        skipped_by_reason=dict(reasons), skipped=skipped,
        reencoded_count=len(reencoded), reencoded=reencoded,
        usable_but_in_no_list=unlisted)
    data_dir = paths.resolve(self.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / REPORT_NAME).write_text(json.dumps(report, indent=2))
    summary = ', '.join(f'{n} {r}' for r, n in reasons.most_common()) or 'none'
    message = (f'AVA: prepared {report["prepared"]} from {len(rows)} usable '
               f'rows; skipped {len(skipped)} ({summary}); re-encoded '
               f'{len(reencoded)}. Details: {REPORT_NAME} in the dataset '
               'directory.')
    logging.info(message)
    print(message)

  def _generate_examples(self, examples):
    for ex in examples:
      yield ex['image_id'], ex

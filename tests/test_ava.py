"""The AVA builder on a small AVA-format fixture with every kind of bad input."""

import io
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from resizer.datasets import ava

GOOD_IDS = list(range(1, 9))


def jpeg(mode='RGB', fmt='JPEG', size=(24, 32), seed=0):
  rng = np.random.default_rng(seed)
  im = Image.fromarray(rng.integers(0, 255, (*size, 3), np.uint8)).convert(mode)
  out = io.BytesIO()
  im.save(out, fmt)
  return out.getvalue()


def counts_for(image_id):
  c = np.zeros(10, int)
  c[image_id % 10] = image_id + 2
  c[(image_id + 3) % 10] = 5
  return c


def row(image_id, counts=None, columns=15):
  counts = counts_for(image_id) if counts is None else counts
  fields = [image_id, image_id, *counts, 7, 0, 900 + image_id][:columns]
  return ' '.join(map(str, fields))


@pytest.fixture
def manual_dir(tmp_path):
  d = tmp_path / 'manual'
  (d / 'images').mkdir(parents=True)
  lines = []
  for i in GOOD_IDS:
    (d / 'images' / f'{i}.jpg').write_bytes(jpeg(seed=i))
    lines.append(row(i))
  lines.append(row(9))                                   # missing image
  (d / 'images' / '10.jpg').write_bytes(b'')             # zero-byte file
  lines.append(row(10))
  (d / 'images' / '11.jpg').write_bytes(jpeg(seed=11, size=(64, 64))[:400])
  lines.append(row(11))                                  # truncated JPEG
  (d / 'images' / '12.jpg').write_bytes(jpeg(fmt='PNG', seed=12))
  lines.append(row(12))                                  # PNG named .jpg: kept
  (d / 'images' / '13.jpg').write_bytes(jpeg(mode='L', seed=13))
  lines.append(row(13))                                  # grayscale: kept
  (d / 'images' / '14.jpg').write_bytes(jpeg(mode='CMYK', seed=14))
  lines.append(row(14))                                  # CMYK: kept
  (d / 'images' / '15.jpg').write_bytes(jpeg(seed=15))
  lines.append(row(15, counts=np.zeros(10, int)))        # zero votes
  (d / 'images' / '16.jpg').write_bytes(jpeg(seed=16))
  lines.append(row(16, columns=12))                      # too few columns
  lines.append('17 17 1 2 x 4 5 6 7 8 9 10 0 0 1')       # not an integer
  (d / 'AVA.txt').write_text('\n'.join(lines) + '\n')
  return d


def prepare(manual, data_dir, config='random_split'):
  builder = tfds.builder(f'ava/{config}', data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  return builder


def examples(builder, split):
  return {int(ex['image_id']): ex for ex in tfds.as_numpy(
      builder.as_dataset(split=split, shuffle_files=False))}


def test_good_rows_prepared_with_right_labels_bad_ones_reported(manual_dir, tmp_path):
  builder = prepare(manual_dir, tmp_path / 'tfds')
  train, test = examples(builder, 'train'), examples(builder, 'test')
  kept = [*GOOD_IDS, 12, 13, 14]
  assert sorted([*train, *test]) == kept
  assert len(test) == round(0.2 * len(kept)) and not set(train) & set(test)
  for image_id, ex in {**train, **test}.items():
    counts = counts_for(image_id)
    np.testing.assert_array_equal(ex['rating_counts'], counts)
    np.testing.assert_allclose(ex['rating_distribution'], counts / counts.sum(),
                               rtol=1e-6)
    assert ex['mean_score'] == pytest.approx(
        (counts * np.arange(1, 11)).sum() / counts.sum(), rel=1e-6)
    assert ex['challenge_id'] == 900 + image_id and ex['image'].shape[-1] == 3
  report = json.loads(open(os.path.join(builder.data_dir,
                                        ava.REPORT_NAME)).read())
  reasons = {s['image_id']: s['reason'] for s in report['skipped']}
  assert reasons[9].startswith('missing image')
  assert reasons[10].startswith('empty file')
  assert reasons[11].startswith('undecodable image')
  assert reasons[15] == 'zero votes'
  assert reasons[16] == '12 columns instead of 15'
  assert reasons[17] == 'a field is not an integer'
  assert report['skipped_count'] == 6
  assert sorted(r['image_id'] for r in report['reencoded']) == [12, 14]
  assert report['prepared'] == {'train': len(train), 'test': len(test)}


def test_preparation_is_deterministic(manual_dir, tmp_path):
  a = examples(prepare(manual_dir, tmp_path / 'a'), 'test')
  b = examples(prepare(manual_dir, tmp_path / 'b'), 'test')
  assert sorted(a) == sorted(b)


def test_official_split_follows_the_lists(manual_dir, tmp_path):
  (manual_dir / 'train_ids.txt').write_text('1\n2\n3\n4\n5\n9\n')
  (manual_dir / 'test_ids.txt').write_text('6.jpg\n7\n')
  builder = prepare(manual_dir, tmp_path / 'tfds', 'official')
  assert sorted(examples(builder, 'train')) == [1, 2, 3, 4, 5]
  assert sorted(examples(builder, 'test')) == [6, 7]
  report = json.loads(open(os.path.join(builder.data_dir,
                                        ava.REPORT_NAME)).read())
  assert any(s['image_id'] == 9 and 'train_ids.txt' in s['reason']
             for s in report['skipped'])


def test_missing_manual_dir_or_ava_txt_says_what_is_expected(tmp_path):
  with pytest.raises(ava.AvaFormatError, match='(?s)nowhere does not exist.*AVA.txt'):
    prepare(tmp_path / 'nowhere', tmp_path / 'tfds')
  (tmp_path / 'empty_ava' / 'images').mkdir(parents=True)
  (tmp_path / 'empty_ava' / 'notes.txt').write_text('x')
  with pytest.raises(ava.AvaFormatError, match='AVA.txt is missing'):
    prepare(tmp_path / 'empty_ava', tmp_path / 'tfds2')

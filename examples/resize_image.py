r"""Runs an exported learned resizer on image files with TensorFlow alone (no
JAX, no code from this repository).

  python -m resizer.export --workdir=runs/demo_learned_seed0 --out=export/demo
  python examples/resize_image.py --model=export/demo/resizer \
      --image=photo.jpg --out=photo_resized.png

The image is first resized to the resizer's input size (its SavedModel's
input shape) with antialiased bilinear interpolation, as a data pipeline
would deliver it; the learned resizer then takes it to its output size. The
output is clipped to [0, 1] and written as PNG.
"""

import argparse

import tensorflow as tf


def resize_file(model_dir: str, image_path: str) -> tf.Tensor:
  """The resizer's float32 output (h, w, 3) for one image file."""
  serve = tf.saved_model.load(model_dir).signatures['serving_default']
  _, height, width, _ = serve.structured_input_signature[1]['images'].shape
  image = tf.io.decode_image(tf.io.read_file(image_path), channels=3,
                             expand_animations=False)
  image = tf.image.resize(image, (height, width), antialias=True)
  image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
  return serve(images=image[None])['resized'][0]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', required=True,
                      help='OUT/resizer of python -m resizer.export')
  parser.add_argument('--image', required=True, help='An image file.')
  parser.add_argument('--out', required=True, help='The PNG to write.')
  args = parser.parse_args()
  resized = resize_file(args.model, args.image)
  png = tf.io.encode_png(tf.cast(
      tf.round(tf.clip_by_value(resized, 0, 1) * 255), tf.uint8))
  tf.io.write_file(args.out, png)
  print(f'Wrote {args.out} ({resized.shape[0]}x{resized.shape[1]}).')


if __name__ == '__main__':
  main()

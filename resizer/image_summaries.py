"""The paper's figure as image panels: input, naive resize, learned resize and
the learned residual, each scaled for display."""

import jax
import jax.numpy as jnp
import numpy as np

from resizer.models import composite, resizers


def display_residual(residual: np.ndarray) -> np.ndarray:
  """Maps a signed residual to [0, 1] symmetrically around 0.5 grey, scaled
  by the largest magnitude per image (zero stays grey)."""
  scale = np.abs(residual).max(axis=(1, 2, 3), keepdims=True)
  return 0.5 + 0.5 * residual / np.maximum(scale, 1e-8)


def resizer_panels(model: composite.ResizerBackbone, variables, images
                   ) -> dict[str, np.ndarray]:
  """Panels [N, H, W, 3] in [0, 1] for a batch of uint8 `images`.

  'input' is the resizer's input; 'naive' is the same fixed interpolation the
  resizer builds on (what the resizer adds to); 'resized' is the resizer's
  output clipped to the valid range; 'residual' is resized − naive, scaled
  by `display_residual`.
  """
  res = model.resizer
  resized = jax.jit(lambda v, x: model.apply(v, x, method=model.resize))(
      variables, images)
  x = jnp.asarray(images, jnp.float32) / 255
  naive = resizers.resize(x, tuple(resized.shape[1:3]),
                          getattr(res, 'interpolation', 'bilinear'),
                          getattr(res, 'antialias', False))
  resized = np.asarray(resized, np.float32)
  naive = np.asarray(naive)
  return {'input': np.asarray(x), 'naive': np.clip(naive, 0, 1),
          'resized': np.clip(resized, 0, 1),
          'residual': display_residual(resized - naive)}

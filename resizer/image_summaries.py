"""The paper's figure as image panels: input, naive resize, learned resize and
the learned residual, each scaled for display."""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from resizer.models import composite

Panels = dict[str, np.ndarray]


def display_residual(residual: np.ndarray) -> np.ndarray:
  """Maps a signed residual to [0, 1] symmetrically around 0.5 grey, scaled
  by the largest magnitude per image (zero stays grey)."""
  scale = np.abs(residual).max(axis=(1, 2, 3), keepdims=True)
  return 0.5 + 0.5 * residual / np.maximum(scale, 1e-8)


def panel_fn(model: composite.ResizerBackbone
             ) -> Callable[[dict, np.ndarray], Panels]:
  """A function (variables, uint8 images) → panels [N, H, W, 3] in [0, 1],
  compiled once.

  'input' is the resizer's input; 'naive' is the fixed interpolation the
  resizer builds on (what it adds its residual to); 'resized' is the
  resizer's output clipped to the valid range; 'residual' is resized − naive
  scaled by `display_residual`.
  """
  @jax.jit
  def resize_both(variables, images):
    resized = model.apply(variables, images, method=model.resize)
    naive = model.apply(variables, images, method=model.naive_resize)
    x = images.astype(jnp.float32) / 255
    return x, naive, resized.astype(jnp.float32)

  def panels(variables, images) -> Panels:
    x, naive, resized = map(np.asarray, resize_both(variables, images))
    return {'input': x, 'naive': np.clip(naive, 0, 1),
            'resized': np.clip(resized, 0, 1),
            'residual': display_residual(resized - naive)}

  return panels

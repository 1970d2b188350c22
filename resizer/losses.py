"""Losses: pure functions of arrays, computed in float32, one value per example."""

import jax
import jax.numpy as jnp


def softmax_cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray,
                          label_smoothing: float = 0.0) -> jnp.ndarray:
  """Cross-entropy of integer `labels` under `logits`, per example.

  Label smoothing spreads `label_smoothing` of the target mass uniformly
  over all classes (Szegedy et al.), as the paper's recipe does with 0.1.
  """
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
  return -jnp.sum(targets * log_p, axis=-1)


def emd(p: jnp.ndarray, q: jnp.ndarray, r: float = 2.0) -> jnp.ndarray:
  """Normalised Earth Mover's Distance between distributions on the last axis.

  `EMD_r(p, q) = (mean_k |CDF_p(k) - CDF_q(k)|^r)^(1/r)` over the K bins
  (NIMA, Talebi & Milanfar 2018), per example.
  """
  cdf_diff = jnp.cumsum(p.astype(jnp.float32), -1) - jnp.cumsum(
      q.astype(jnp.float32), -1)
  return jnp.mean(jnp.abs(cdf_diff) ** r, axis=-1) ** (1.0 / r)

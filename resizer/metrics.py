"""Metrics over a whole evaluation set, exact: per-example values, then sums.

The eval step returns per-example values and a mask (padding has mask 0);
these functions reduce them exactly, so no example is counted twice or
dropped, however the set was batched or spread over hosts.
"""

import jax
import jax.numpy as jnp
import numpy as np


def topk_correct(logits: jnp.ndarray, labels: jnp.ndarray, k: int
                 ) -> jnp.ndarray:
  """1.0 where the label is among the k largest logits, per example (on device,
  so that only one float per example leaves the accelerator)."""
  _, topk = jax.lax.top_k(logits, min(k, logits.shape[-1]))
  return jnp.any(topk == labels[..., None], axis=-1).astype(jnp.float32)


def masked_mean(values: np.ndarray, mask: np.ndarray) -> float:
  """Mean of `values` over the examples where `mask` is 1."""
  total = float(np.sum(mask))
  if total == 0:
    raise ValueError('no unmasked examples to average over')
  return float(np.sum(values * mask) / total)


def classification_metrics(outputs: dict[str, np.ndarray]) -> dict[str, float]:
  """Loss, top-1 and top-5 accuracy, and the example count.

  `outputs` holds per-example arrays `loss`, `top1`, `top5` and `mask`.
  """
  mask = outputs['mask']
  return dict(
      loss=masked_mean(outputs['loss'], mask),
      top1_accuracy=masked_mean(outputs['top1'], mask),
      top5_accuracy=masked_mean(outputs['top5'], mask),
      num_examples=int(np.sum(mask)),
  )

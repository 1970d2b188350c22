"""Metrics over a whole evaluation set, exact: per-example values, then sums.

The eval step returns per-example values and a mask (padding has mask 0);
these functions reduce them exactly, so no example is counted twice or
dropped, however the set was batched or spread over hosts.
"""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats


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


def score_moments(p: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Mean and standard deviation of the score k = 1..K under distributions
  `p` on the last axis."""
  scores = jnp.arange(1, p.shape[-1] + 1, dtype=jnp.float32)
  mean = jnp.sum(p * scores, axis=-1)
  var = jnp.sum(p * (scores - mean[..., None]) ** 2, axis=-1)
  return mean, jnp.sqrt(jnp.maximum(var, 0.0))


def iqa_metrics(outputs: dict[str, np.ndarray]) -> dict[str, float]:
  """Whole-set IQA metrics from per-example predicted/true score moments.

  SRCC and PLCC of the predicted vs true mean scores (the paper's and NIMA's
  headline numbers), mean EMD, binary accuracy at mean score 5 (high vs low
  quality, as AVA's classification protocol), and SRCC of the standard
  deviations. `outputs` holds per-example `pred_mean`, `true_mean`,
  `pred_std`, `true_std`, `emd` and `mask`.
  """
  keep = outputs['mask'] > 0
  o = {k: np.asarray(v, np.float64)[keep] for k, v in outputs.items()}
  if len(o['emd']) < 2:
    raise ValueError('IQA metrics need at least two unmasked examples')
  return dict(
      srcc=float(scipy.stats.spearmanr(o['pred_mean'], o['true_mean'])[0]),
      plcc=float(scipy.stats.pearsonr(o['pred_mean'], o['true_mean'])[0]),
      emd=float(np.mean(o['emd'])),
      binary_accuracy=float(np.mean((o['pred_mean'] > 5) == (o['true_mean'] > 5))),
      std_srcc=float(scipy.stats.spearmanr(o['pred_std'], o['true_std'])[0]),
      num_examples=int(keep.sum()),
  )

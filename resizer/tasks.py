"""What a task adds to the generic trainer: its loss, its per-example eval
outputs and how a whole eval set's outputs become metrics."""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from resizer import losses, metrics

Batch = dict[str, jnp.ndarray]


@dataclasses.dataclass(frozen=True)
class Task:
  """A task's pure functions; per-example values throughout."""
  # (logits, batch) → per-example training loss (float32).
  loss: Callable[[jnp.ndarray, Batch], jnp.ndarray]
  # (logits, batch) → per-example scalars averaged in the train log.
  train_metrics: Callable[[jnp.ndarray, Batch], dict[str, jnp.ndarray]]
  # (logits, batch) → per-example arrays gathered over the eval set.
  eval_outputs: Callable[[jnp.ndarray, Batch], dict[str, jnp.ndarray]]
  # Gathered outputs (with 'mask') → metrics of the whole set.
  summarize: Callable[[dict[str, np.ndarray]], dict[str, float]]
  # The metric `results.json` and the report lead with.
  main_metric: str


def classification(config: ml_collections.ConfigDict) -> Task:
  """Softmax cross-entropy with label smoothing; top-1/top-5 accuracy."""
  smoothing = config.loss.label_smoothing

  def loss(logits, batch):
    return losses.softmax_cross_entropy(logits, batch['label'], smoothing)

  def train_metrics(logits, batch):
    return {'accuracy': metrics.topk_correct(logits, batch['label'], 1)}

  def eval_outputs(logits, batch):
    # Eval loss without smoothing: the held-out likelihood.
    return {'loss': losses.softmax_cross_entropy(logits, batch['label']),
            'top1': metrics.topk_correct(logits, batch['label'], 1),
            'top5': metrics.topk_correct(logits, batch['label'], 5)}

  return Task(loss, train_metrics, eval_outputs,
              metrics.classification_metrics, main_metric='top1_accuracy')


def iqa(config: ml_collections.ConfigDict) -> Task:
  """Image quality assessment: logits → softmax over the K rating bins,
  trained with the normalised EMD to the human rating distribution
  (`batch['label']`, from `config.input.label_key`)."""
  r = config.loss.emd_r

  def head(logits):
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

  def loss(logits, batch):
    return losses.emd(head(logits), batch['label'], r)

  def train_metrics(logits, batch):
    pred_mean, _ = metrics.score_moments(head(logits))
    true_mean, _ = metrics.score_moments(batch['label'])
    return {'mean_score_abs_error': jnp.abs(pred_mean - true_mean)}

  def eval_outputs(logits, batch):
    p = head(logits)
    pred_mean, pred_std = metrics.score_moments(p)
    true_mean, true_std = metrics.score_moments(batch['label'])
    return {'pred_mean': pred_mean, 'true_mean': true_mean,
            'pred_std': pred_std, 'true_std': true_std,
            'emd': losses.emd(p, batch['label'], r)}

  return Task(loss, train_metrics, eval_outputs, metrics.iqa_metrics,
              main_metric='srcc')


TASKS = {'classification': classification, 'iqa': iqa}


def get_task(config: ml_collections.ConfigDict) -> Task:
  if config.task not in TASKS:
    raise ValueError(f'config.task={config.task!r} is invalid; expected one '
                     f'of {sorted(TASKS)}.')
  return TASKS[config.task](config)


def label_spec(config: ml_collections.ConfigDict) -> jax.ShapeDtypeStruct:
  """One example's label as the input pipeline yields it: a TFDS
  ClassLabel (int64) for classification, a float32 rating distribution
  over `config.model.num_classes` bins for IQA."""
  if config.task == 'iqa':
    return jax.ShapeDtypeStruct((config.model.num_classes,), np.float32)
  return jax.ShapeDtypeStruct((), np.int64)

"""One training step as the specification of data parallelism.

`reference_step` is what one step of data-parallel training must compute,
written without the trainer: a plain `jax.grad` of the mean loss over the
whole global batch on one device, then the optimiser's update. With
per-device BatchNorm (`bn_groups` > 1) each group of rows gets its own batch
statistics, as each device would, and the running statistics are averaged.

Shared by tests/test_data_parallel.py and the multi-process script
tests/multiprocess_step.py, so both compare the trainer against the same
reference.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import common
from resizer import optim, tasks
from resizer.models import composite
from tests import helpers

GLOBAL_BATCH = 16
IN_SIZE = 32
NUM_CLASSES = 5


def config(bn_cross_device: bool = True):
  """A tiny learned-resizer ResNet with SGD (momentum) and weight decay; no
  clipping, so a wrongly scaled gradient shows in the update."""
  c = common.imagenet_config(f'resizer=learned,res={IN_SIZE},out=16',
                             'resnet_tiny')
  c.model.update(dtype='float32', num_classes=NUM_CLASSES)
  c.optim.update(name='sgd', schedule='constant', learning_rate=0.1,
                 momentum=0.9, weight_decay=1e-2, grad_clip_norm=0.0,
                 warmup_epochs=0)
  c.bn_cross_device = bn_cross_device
  return c


def batch() -> dict[str, np.ndarray]:
  """A fixed global batch."""
  rng = np.random.default_rng(0)
  return {'image': rng.integers(0, 256, (GLOBAL_BATCH, IN_SIZE, IN_SIZE, 3),
                                dtype=np.uint8),
          'label': rng.integers(0, NUM_CLASSES, GLOBAL_BATCH)}


def optimizer(c):
  return optim.make_optimizer(c.optim, steps_per_epoch=10, total_steps=100)


def initial_state(c) -> dict:
  """The trainer's initial state, as host numpy arrays."""
  model = composite.build_model(c)
  tx, _ = optimizer(c)
  variables = helpers.init_compiled(
      model, jnp.zeros((1, IN_SIZE, IN_SIZE, 3), jnp.uint8),
      {'params': jax.random.key(0), 'dropout': jax.random.key(0)})
  state = {'step': np.int32(0), 'params': variables['params'],
           'batch_stats': variables['batch_stats'],
           'opt_state': tx.init(variables['params'])}
  return jax.device_get(state)


def reference_step(c, state: dict, batch: dict, bn_groups: int = 1,
                   group_rows: list[np.ndarray] | None = None
                   ) -> tuple[dict, dict]:
  """(new state, {'loss', 'grad_norm'}): one step on one device. BatchNorm
  sees `bn_groups` contiguous blocks of rows, or the rows of each index
  array in `group_rows`."""
  model = composite.build_model(c)  # No axis name: plain BatchNorm.
  task = tasks.get_task(c)
  tx, _ = optimizer(c)
  # Contiguous rows per group, as a batch sharded over the mesh is split.
  if group_rows is None:
    group_rows = np.split(np.arange(GLOBAL_BATCH), bn_groups)
  groups = [jax.tree.map(lambda x, rows=rows: x[rows], batch)
            for rows in group_rows]

  def loss_fn(params):
    losses, stats = [], []
    for group in groups:
      logits, new_vars = model.apply(
          {'params': params, 'batch_stats': state['batch_stats']},
          group['image'], train=True, mutable=['batch_stats'])
      losses.append(task.loss(logits, group))
      stats.append(new_vars['batch_stats'])
    batch_stats = jax.tree.map(lambda *s: sum(s) / len(s), *stats)
    return jnp.mean(jnp.concatenate(losses)), batch_stats

  # Compiled whole: run op by op, each new BatchNorm group size compiles
  # every primitive again (10 s per grouping on a CPU).
  (loss, batch_stats), grads = jax.jit(
      jax.value_and_grad(loss_fn, has_aux=True))(state['params'])
  updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
  new_state = {'step': state['step'] + 1,
               'params': optax.apply_updates(state['params'], updates),
               'batch_stats': batch_stats, 'opt_state': opt_state}
  return (jax.device_get(new_state),
          {'loss': float(loss), 'grad_norm': float(optax.tree.norm(grads))})

"""The optimiser of a config: schedule, SGD/Adam, weight decay, clipping, and
per-part learning-rate multipliers or freezing of the resizer and backbone."""

from typing import Callable

import jax
import ml_collections
import optax

from resizer.errors import require
from resizer.models import composite

SCHEDULES = ('step', 'cosine', 'constant')
OPTIMIZERS = ('sgd', 'adam', 'adamw')


def check(optim: ml_collections.ConfigDict) -> None:
  """Raises a ConfigError (a ValueError) naming the first bad field of a
  `config.optim` block; `make_optimizer` runs it too, but it needs no step
  counts, so the trainer can call it before reading any data."""
  require(optim.name in OPTIMIZERS, 'config.optim.name', optim.name,
          f'one of {list(OPTIMIZERS)}')
  require(optim.schedule in SCHEDULES, 'config.optim.schedule',
          optim.schedule, f'one of {list(SCHEDULES)}')
  require(optim.freeze in ('',) + composite.PARTS, 'config.optim.freeze',
          optim.freeze, f"'' or one of {list(composite.PARTS)}")
  require(optim.learning_rate > 0, 'config.optim.learning_rate',
          optim.learning_rate, 'a positive number')
  for part in composite.PARTS:
    key = f'{part}_lr_mult'
    require(optim[key] >= 0, f'config.optim.{key}', optim[key],
            'a number >= 0')
  accumulate = optim.accumulate_steps
  require(isinstance(accumulate, int) and not isinstance(accumulate, bool)
          and accumulate >= 1, 'config.optim.accumulate_steps', accumulate,
          'an integer >= 1')


def learning_rate_schedule(optim: ml_collections.ConfigDict,
                           steps_per_epoch: int, total_steps: int
                           ) -> optax.Schedule:
  """Base learning rate per step: 'step' decays by `decay_factor` every
  `decay_epochs` (the paper's 0.94 every 2 epochs), 'cosine' decays to 0 at
  `total_steps`, 'constant' holds; all after `warmup_epochs` of linear warmup.
  `optim` is a block `check` accepts."""
  warmup = int(round(optim.warmup_epochs * steps_per_epoch))
  lr = optim.learning_rate
  if optim.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup, max(total_steps, warmup + 1), end_value=0.0)
  if optim.schedule == 'step':
    decay_steps = max(1, int(round(optim.decay_epochs * steps_per_epoch)))
    main = optax.exponential_decay(lr, decay_steps, optim.decay_factor,
                                   staircase=True)
  else:  # 'constant'
    main = optax.constant_schedule(lr)
  if warmup == 0:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def _kernels_only(params):
  """Weight decay mask: convolution and dense kernels, not biases or BN."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: path[-1].key == 'kernel', params)


def _base_optimizer(optim, schedule: optax.Schedule
                    ) -> optax.GradientTransformation:
  if optim.name == 'sgd':
    # L2 on kernels added to the gradient, as the TF recipes the paper used.
    return optax.chain(
        optax.add_decayed_weights(optim.weight_decay, _kernels_only),
        optax.sgd(schedule, momentum=optim.momentum or None,
                  nesterov=optim.nesterov))
  if optim.name == 'adam':
    return optax.chain(
        optax.add_decayed_weights(optim.weight_decay, _kernels_only),
        optax.adam(schedule))
  # 'adamw'
  return optax.adamw(schedule, weight_decay=optim.weight_decay,
                     mask=_kernels_only)


def make_optimizer(optim: ml_collections.ConfigDict, steps_per_epoch: int,
                   total_steps: int
                   ) -> tuple[optax.GradientTransformation, Callable]:
  """The optimiser for params {'resizer': ..., 'backbone': ...}, and the base
  schedule (for logging). Each part gets the schedule times its multiplier;
  a part named by `optim.freeze` gets zero updates."""
  check(optim)
  schedule = learning_rate_schedule(optim, steps_per_epoch, total_steps)
  parts = {}
  for part in composite.PARTS:
    mult = optim[f'{part}_lr_mult']
    if part == optim.freeze or mult == 0:
      parts[part] = optax.set_to_zero()
    else:
      parts[part] = _base_optimizer(
          optim, lambda step, m=mult: m * schedule(step))
  tx = optax.multi_transform(
      parts, lambda params: {k: k if k in composite.PARTS else 'backbone'
                             for k in params})
  if optim.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), tx)
  return tx, schedule

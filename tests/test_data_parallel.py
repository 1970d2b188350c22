"""The specification of data parallelism: one step of the trainer's sharded
step on any number of devices is one step of plain full-batch training.

The reference (tests/data_parallel_case.py) is a single-device `jax.grad` of
the mean loss over the whole global batch followed by the same optax update
(SGD with momentum, weight decay and active clipping); it shares no code
with the sharded step. Compared: parameters, BatchNorm statistics, the
optimiser state and the logged loss and gradient norm.
"""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from resizer import tasks, train
from resizer.models import composite
from tests import data_parallel_case as case


def sharded_step(c, state, batch, num_devices):
  """One step of train.make_train_step on the first `num_devices` devices."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:num_devices]), (train.AXIS,))
  model = composite.build_model(
      c, bn_axis_name=train.AXIS if c.bn_cross_device else None)
  tx, schedule = case.optimizer(c)
  step = train.make_train_step(model, tx, tasks.get_task(c), schedule, mesh,
                               c.optim.accumulate_steps, c.ema_decay)
  state = jax.device_put(state, NamedSharding(mesh, P()))
  batch = jax.device_put(batch, NamedSharding(mesh, P(train.AXIS)))
  new_state, metrics = step(state, batch, jax.random.key(1))
  return jax.device_get(new_state), jax.device_get(metrics)


def assert_trees_close(actual, expected, rtol=1e-5, atol=1e-6):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(actual)[0],
                          jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))


# Without clipping a wrongly scaled gradient shows in the update; with it
# (the clipped update has a fixed norm) only in the logged gradient norm.
# Each case compiles its own sharded step (3-5 s on a CPU), so each covers
# something the others do not: one device (the step without parallelism),
# global and per-device statistics, clipping, and 2, 4 and 8 devices.
CASES = [
    # num_devices, bn_cross_device, grad_clip_norm
    (1, True, 0.0), (8, True, 0.0), (4, False, 0.0), (2, False, 0.5),
    (8, True, 0.5),
]


@pytest.mark.slow
@pytest.mark.parametrize('num_devices, bn_cross_device, clip', CASES)
def test_step_is_the_full_batch_gradient_step(num_devices, bn_cross_device,
                                              clip):
  c = case.config(bn_cross_device)
  c.optim.grad_clip_norm = clip
  state, batch = case.initial_state(c), case.batch()
  # Global statistics are the whole batch's; per-device ones each shard's.
  groups = 1 if bn_cross_device else num_devices
  expected, expected_metrics = case.reference_step(c, state, batch, groups)
  assert expected_metrics['grad_norm'] > clip  # Clipping, when on, acts.

  actual, metrics = sharded_step(c, state, batch, num_devices)

  assert_trees_close(actual, expected)
  assert metrics['loss'] == pytest.approx(expected_metrics['loss'], rel=1e-5)
  assert metrics['grad_norm'] == pytest.approx(expected_metrics['grad_norm'],
                                               rel=1e-5)


# Gradient accumulation: k micro-batches per device are k more BatchNorm
# groups (contiguous rows, in order) of the same full-batch step; with one
# device, cross-device statistics are the micro-batch's own.
ACCUMULATION = [
    # num_devices, bn_cross_device, accumulate_steps
    (1, True, 2), (1, False, 4), (4, False, 2),
]


@pytest.mark.slow
@pytest.mark.parametrize('num_devices, bn_cross_device, k', ACCUMULATION)
def test_accumulated_micro_batches_make_the_full_batch_step(
    num_devices, bn_cross_device, k):
  c = case.config(bn_cross_device)
  c.optim.accumulate_steps = k
  state, batch = case.initial_state(c), case.batch()
  expected, expected_metrics = case.reference_step(c, state, batch,
                                                   num_devices * k)
  actual, metrics = sharded_step(c, state, batch, num_devices)
  assert_trees_close(actual, expected)
  assert metrics['loss'] == pytest.approx(expected_metrics['loss'], rel=1e-5)
  assert metrics['grad_norm'] == pytest.approx(expected_metrics['grad_norm'],
                                               rel=1e-5)


@pytest.mark.slow
def test_accumulation_with_cross_device_batchnorm_groups_micro_batches_across_devices():
  """4 devices x 2 micro-batches, global statistics: BN's group i is every
  device's i-th micro-batch, rows that are not contiguous in the batch."""
  c = case.config(True)
  c.optim.accumulate_steps = 2
  state, batch = case.initial_state(c), case.batch()
  per_device, chunk = case.GLOBAL_BATCH // 4, case.GLOBAL_BATCH // 8
  rows = [np.concatenate([np.arange(d * per_device + i * chunk,
                                    d * per_device + (i + 1) * chunk)
                          for d in range(4)]) for i in range(2)]
  expected, expected_metrics = case.reference_step(c, state, batch,
                                                   group_rows=rows)
  actual, metrics = sharded_step(c, state, batch, 4)
  assert_trees_close(actual, expected)
  assert metrics['grad_norm'] == pytest.approx(expected_metrics['grad_norm'],
                                               rel=1e-5)


@pytest.mark.slow
def test_batchnorm_alone_separates_accumulation_from_one_large_batch():
  """Every model here has BatchNorm, whose statistics come from what one
  forward pass sees: accumulation equals the large-batch step with BN
  grouped per micro-batch (above, the case (1, True, 2)), and that differs
  measurably from one group, so the comparison above has teeth."""
  c = case.config(True)
  state, batch = case.initial_state(c), case.batch()
  one_group, _ = case.reference_step(c, state, batch, 1)
  two_groups, _ = case.reference_step(c, state, batch, 2)
  diff = max(np.abs(a - b).max() for a, b in zip(
      jax.tree.leaves(one_group['params']),
      jax.tree.leaves(two_groups['params'])))
  assert diff > 1e-4


@pytest.mark.slow
def test_the_weight_average_follows_the_updated_parameters():
  """ema ← d · ema + (1 − d) · params, on the parameters after the update,
  computed here in numpy from the reference step (on 4 devices)."""
  c = case.config()
  c.ema_decay = 0.75
  state, batch = case.initial_state(c), case.batch()
  ema = jax.tree.map(lambda x: x + 1.0, state['params'])  # Not the params.
  expected, _ = case.reference_step(c, state, batch)
  actual, _ = sharded_step(c, {**state, 'ema_params': ema}, batch, 4)
  assert_trees_close({k: v for k, v in actual.items() if k != 'ema_params'},
                     expected)
  assert_trees_close(actual['ema_params'], jax.tree.map(
      lambda e, p: 0.75 * np.asarray(e) + 0.25 * np.asarray(p),
      ema, expected['params']))

"""The optimiser's schedule and per-part handling, and the losses, by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import common
from resizer import losses, metrics, optim


def optim_config(**kw):
  c = common.base_config().optim
  c.update(weight_decay=0.0, **kw)
  return c


def test_step_schedule_is_the_papers_094_every_two_epochs():
  _, schedule = optim.make_optimizer(optim_config(), steps_per_epoch=100,
                                     total_steps=1000)
  assert schedule(0) == pytest.approx(0.05)
  assert schedule(199) == pytest.approx(0.05)
  assert schedule(200) == pytest.approx(0.05 * 0.94)
  assert schedule(650) == pytest.approx(0.05 * 0.94**3)


def test_cosine_schedule_warms_up_then_decays_to_zero():
  _, schedule = optim.make_optimizer(
      optim_config(schedule='cosine', warmup_epochs=1.0), steps_per_epoch=10,
      total_steps=100)
  assert schedule(0) == 0 and schedule(10) == pytest.approx(0.05)
  assert schedule(100) == pytest.approx(0.0, abs=1e-9)


def params():
  return {'resizer': {'conv': {'kernel': jnp.ones((2,))}},
          'backbone': {'head': {'kernel': jnp.ones((3,))}}}


def one_update(cfg):
  tx, _ = optim.make_optimizer(cfg, steps_per_epoch=10, total_steps=100)
  p = params()
  grads = jax.tree.map(jnp.ones_like, p)
  updates, _ = tx.update(grads, tx.init(p), p)
  return updates


@pytest.mark.parametrize('part', ['resizer', 'backbone'])
def test_freezing_a_part_leaves_it_unchanged(part):
  updates = one_update(optim_config(freeze=part, schedule='constant'))
  other = 'backbone' if part == 'resizer' else 'resizer'
  assert all(jnp.all(u == 0) for u in jax.tree.leaves(updates[part]))
  assert all(jnp.all(u != 0) for u in jax.tree.leaves(updates[other]))


def test_learning_rate_multipliers_scale_each_part():
  updates = one_update(optim_config(schedule='constant', momentum=0.0,
                                    resizer_lr_mult=10.0, backbone_lr_mult=0.1))
  np.testing.assert_allclose(updates['resizer']['conv']['kernel'], -0.5)
  np.testing.assert_allclose(updates['backbone']['head']['kernel'], -0.005)


def test_gradient_clipping_bounds_the_global_norm():
  tx, _ = optim.make_optimizer(
      optim_config(schedule='constant', momentum=0.0, learning_rate=1.0,
                   grad_clip_norm=1.0), 10, 100)
  p = params()
  grads = jax.tree.map(lambda x: 100 * jnp.ones_like(x), p)
  updates, _ = tx.update(grads, tx.init(p), p)
  assert float(optax.tree.norm(updates)) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize('key, value, match', [
    ('name', 'lamb', "config.optim.name='lamb' is invalid; expected one of"),
    ('schedule', 'linear', "config.optim.schedule='linear'"),
    ('freeze', 'head', "config.optim.freeze='head'"),
    ('learning_rate', 0.0, 'config.optim.learning_rate=0.0'),
    ('resizer_lr_mult', -1.0, 'config.optim.resizer_lr_mult=-1.0'),
    ('accumulate_steps', 0, 'config.optim.accumulate_steps=0'),
])
def test_a_bad_optim_field_is_named_before_any_step_count_is_known(key, value,
                                                                   match):
  cfg = optim_config(**{key: value})
  with pytest.raises(ValueError, match=match):
    optim.check(cfg)
  with pytest.raises(ValueError, match=match):
    optim.make_optimizer(cfg, steps_per_epoch=10, total_steps=100)


def test_cross_entropy_with_label_smoothing_by_hand():
  logits = jnp.log(jnp.array([[0.7, 0.2, 0.1]]))
  plain = losses.softmax_cross_entropy(logits, jnp.array([0]))
  np.testing.assert_allclose(plain, [-np.log(0.7)], rtol=1e-6)
  smooth = losses.softmax_cross_entropy(logits, jnp.array([0]), 0.3)
  target = np.array([0.8, 0.1, 0.1])
  np.testing.assert_allclose(smooth, [-(target * np.log([0.7, 0.2, 0.1])).sum()],
                             rtol=1e-6)


def test_emd_by_hand():
  p = jnp.array([0.0, 1.0, 0.0, 0.0])
  q = jnp.array([0.0, 0.0, 1.0, 0.0])
  assert float(losses.emd(p, p)) == 0.0
  # CDFs differ by 1 in one of the 4 bins: r=2 → sqrt(1/4); r=1 → 1/4.
  assert float(losses.emd(p, q, r=2)) == pytest.approx(0.5)
  assert float(losses.emd(p, q, r=1)) == pytest.approx(0.25)


def test_topk_and_masked_mean():
  logits = jnp.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
  labels = jnp.array([1, 2])
  np.testing.assert_array_equal(metrics.topk_correct(logits, labels, 1), [0, 1])
  np.testing.assert_array_equal(metrics.topk_correct(logits, labels, 2), [1, 1])
  assert metrics.masked_mean(np.array([1.0, 0.0, 5.0]), np.array([1, 1, 0])) == 0.5

"""Parameter counts and forward GFLOPs of a config's model, without training
(`python -m resizer.summary` prints them; the trainer records them).

Counts come from `jax.eval_shape` (nothing is allocated); GFLOPs per image
from XLA's cost analysis of the lowered (not compiled) forward pass at batch
1, where one multiply-add counts as two FLOPs. `total_params` counts
trainable parameters plus BatchNorm statistics, as Keras' `count_params`
does.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from resizer.models import composite


def count(tree: Any) -> int:
  """Number of scalars in a pytree of arrays or shape structs."""
  return sum(int(x.size) for x in jax.tree.leaves(tree))


def abstract_variables(model, in_size: tuple[int, int], batch: int = 1):
  """The model's variables as shape structs (nothing allocated)."""
  images = jnp.zeros((batch, *in_size, 3), jnp.uint8)
  return jax.eval_shape(
      lambda: model.init(jax.random.key(0), images, train=False))


def forward_gflops(model, variables, in_size: tuple[int, int]) -> float:
  """GFLOPs of one image's eval-mode forward pass, by XLA's cost analysis."""
  images = jax.ShapeDtypeStruct((1, *in_size, 3), jnp.uint8)
  lowered = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(
      variables, images)
  return lowered.cost_analysis()['flops'] / 1e9


def conv_weights(params: Any) -> int:
  """Number of convolution-kernel weights (4-D `kernel`s) in `params`: the
  count the paper reports for its resizer (no BatchNorm, no biases)."""
  return sum(int(x.size) for path, x in
             jax.tree_util.tree_flatten_with_path(params)[0]
             if getattr(path[-1], 'key', None) == 'kernel' and x.ndim == 4)


def model_summary(config: ml_collections.ConfigDict,
                  model: nn.Module | None = None) -> dict[str, Any]:
  """Parameter counts, resolutions and GFLOPs of `config`'s model (`model`,
  if the caller has built it already)."""
  if model is None:
    model = composite.build_model(config)
  in_size, out_size = composite.sizes(config.resizer)
  variables = abstract_variables(model, in_size)
  params = variables['params']
  stats = variables.get('batch_stats', {})
  resizer_params = count(params.get('resizer', {}))
  backbone_params = count(params.get('backbone', {}))
  # With kind 'none' the input pipeline's resize is the one the images get.
  resize = (config.input if config.resizer.kind == 'none' and 'input' in config
            else config.resizer)
  return dict(
      model=config.model.name,
      resizer=config.resizer.kind,
      interpolation=resize.interpolation,
      antialias=bool(resize.antialias),
      in_size=list(in_size),
      out_size=list(out_size),
      resizer_params=resizer_params,
      resizer_conv_weights=conv_weights(params.get('resizer', {})),
      backbone_params=backbone_params,
      trainable_params=resizer_params + backbone_params,
      resizer_batch_stats=count(stats.get('resizer', {})),
      batch_stats=count(stats),
      total_params=resizer_params + backbone_params + count(stats),
      gflops_per_image=round(forward_gflops(model, variables, in_size), 4),
  )


def format_summary(s: dict[str, Any]) -> str:
  """A human-readable block of `model_summary`'s figures."""
  resizer = s['resizer'] + (
      '' if s['resizer'] in ('learned', 'none')
      else f" ({s['interpolation']}, antialias={s['antialias']})")
  rows = [
      ('backbone', s['model']),
      ('resizer', resizer),
      ('input → output', f"{s['in_size'][0]}x{s['in_size'][1]} → "
                         f"{s['out_size'][0]}x{s['out_size'][1]}"),
      ('resizer params', f"{s['resizer_params']:,} (conv weights "
                         f"{s['resizer_conv_weights']:,})"),
      ('backbone params', f"{s['backbone_params']:,}"),
      ('trainable params', f"{s['trainable_params']:,}"),
      ('BN statistics', f"{s['batch_stats']:,} "
                        f"(resizer {s['resizer_batch_stats']:,})"),
      ('total', f"{s['total_params']:,}"),
      ('forward GFLOPs/image', f"{s['gflops_per_image']:.3f}"),
  ]
  width = max(len(k) for k, _ in rows)
  return '\n'.join(f'{k:<{width}}  {v}' for k, v in rows)

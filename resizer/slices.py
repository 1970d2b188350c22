"""Cloud TPU slices by the names `gcloud` and launch/tpu_vm.sh take
(`v4-32`, `v5litepod-16`, `v5p-8`, `v6e-8`): their chips, hosts and HBM,
and the topology XLA compiles for without TPU hardware.

In `v4-N` and `v5p-N`, N counts TensorCores (two per chip, one JAX device
per chip); in `v5litepod-N`/`v5e-N` and `v6e-N` it counts chips. Hosts hold
4 chips each, except single-host v5e/v6e slices of up to 8 chips.
"""

import dataclasses
import math
import re


@dataclasses.dataclass(frozen=True)
class Generation:
  topology_prefix: str    # In XLA's topology names: 'v5e:2x2', 'v4:2x2x1'.
  hbm_gib: float          # Per chip (Cloud TPU's system architecture pages).
  cores_in_name: int      # TensorCores per chip counted in 'v4-N'.
  dims: int               # 3-D torus (v4, v5p) or 2-D (v5e, v6e).
  max_single_host: int    # Chips one host can hold.
  megacore: bool          # Both TensorCores of a chip are one JAX device.


GENERATIONS = {
    'v4': Generation('v4', 32, 2, 3, 4, megacore=True),
    'v5p': Generation('v5', 95, 2, 3, 4, megacore=True),
    'v5litepod': Generation('v5e', 16, 1, 2, 8, megacore=False),
    'v5e': Generation('v5e', 16, 1, 2, 8, megacore=False),
    'v6e': Generation('v6e', 32, 1, 2, 8, megacore=False),
}
_BY_PREFIX = {g.topology_prefix: g for g in GENERATIONS.values()}


@dataclasses.dataclass(frozen=True)
class Slice:
  name: str               # As given: 'v4-32' or 'v5e:2x2'.
  topology: str           # XLA's: 'v4:2x2x4'.
  chips: int
  hbm_gib: float
  chips_per_host_bounds: tuple[int, int, int] | None
  megacore: bool

  def topology_kwargs(self) -> dict:
    """`jax.experimental.topologies.get_topology_desc`'s keyword arguments."""
    kwargs = {'chip_config_name': 'megacore'} if self.megacore else {}
    if self.chips_per_host_bounds:
      kwargs['chips_per_host_bounds'] = self.chips_per_host_bounds
    return kwargs


class UnknownSlice(ValueError):
  """A name that is neither an accelerator type nor a topology we know."""


def _shape(chips: int, dims: int) -> tuple[int, ...]:
  """The torus of `chips` (a power of two) as Cloud TPU lays it out."""
  if dims == 2:
    k = int(math.log2(chips))
    return (2 ** (k // 2), 2 ** (k - k // 2))
  shape = [2, 2, 1]
  while math.prod(shape) < chips:
    smallest = min(shape)
    i = max(j for j, n in enumerate(shape) if n == smallest)
    shape[i] *= 2
  return tuple(shape)


def parse(name: str) -> Slice:
  """The slice called `name`: an accelerator type (`v4-32`) or an XLA
  topology (`v5e:2x2`, `v4:2x2x1`, one host's chips unless the shape is
  larger than a host)."""
  if ':' in name:
    prefix, _, shape = name.partition(':')
    generation = _BY_PREFIX.get(prefix)
    dims = shape.split('x')
    if generation is None or not all(d.isdigit() for d in dims):
      raise UnknownSlice(f'{name!r} is not a TPU topology; expected e.g. '
                         f'{", ".join(p + ":2x2" for p in _BY_PREFIX)}.')
    chips = math.prod(int(d) for d in dims)
    return Slice(name, name, chips, generation.hbm_gib, None,
                 generation.megacore)
  match = re.fullmatch(r'(v4|v5p|v5litepod|v5e|v6e)-(\d+)', name)
  if not match:
    raise UnknownSlice(
        f'{name!r} is not a Cloud TPU accelerator type; expected e.g. v4-32, '
        'v5litepod-16, v5p-8, v6e-8 (or a topology such as v5e:2x2).')
  generation = GENERATIONS[match[1]]
  count = int(match[2])
  chips = count // generation.cores_in_name
  if chips < 1 or chips & (chips - 1) or chips * generation.cores_in_name != count:
    raise UnknownSlice(
        f'{name!r}: this tool lays out power-of-two slices only; give the '
        f'topology instead, e.g. --topology={generation.topology_prefix}:4x4x12.')
  shape = _shape(chips, generation.dims)
  if generation.dims == 3 and chips < 4:
    raise UnknownSlice(f'{name!r}: the smallest {match[1]} slice has 4 chips '
                       f'({match[1]}-{4 * generation.cores_in_name}).')
  host = ((*shape, 1)[:3] if chips <= generation.max_single_host
          else (2, 2, 1))
  topology = f'{generation.topology_prefix}:' + 'x'.join(map(str, shape))
  return Slice(name, topology, chips, generation.hbm_gib, tuple(host),
               generation.megacore)

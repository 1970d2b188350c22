"""Cloud TPU slice names become the chips, hosts and topology XLA compiles
for, as Cloud TPU's system architecture documents them."""

import pytest

from resizer import slices


@pytest.mark.parametrize('name, topology, chips, hbm, host', [
    ('v4-8', 'v4:2x2x1', 4, 32, (2, 2, 1)),       # N counts TensorCores.
    ('v4-32', 'v4:2x2x4', 16, 32, (2, 2, 1)),     # 4 hosts.
    ('v4-128', 'v4:4x4x4', 64, 32, (2, 2, 1)),
    ('v5p-8', 'v5:2x2x1', 4, 95, (2, 2, 1)),
    ('v5p-256', 'v5:4x4x8', 128, 95, (2, 2, 1)),
    ('v5litepod-1', 'v5e:1x1', 1, 16, (1, 1, 1)),  # N counts chips.
    ('v5litepod-8', 'v5e:2x4', 8, 16, (2, 4, 1)),  # One host.
    ('v5litepod-16', 'v5e:4x4', 16, 16, (2, 2, 1)),
    ('v5e-256', 'v5e:16x16', 256, 16, (2, 2, 1)),
    ('v6e-8', 'v6e:2x4', 8, 32, (2, 4, 1)),
    ('v6e-64', 'v6e:8x8', 64, 32, (2, 2, 1)),
])
def test_accelerator_types_name_their_topology(name, topology, chips, hbm,
                                               host):
  s = slices.parse(name)
  assert (s.topology, s.chips, s.hbm_gib, s.chips_per_host_bounds) == (
      topology, chips, hbm, host)
  assert s.megacore == name.startswith(('v4', 'v5p'))


def test_a_topology_is_taken_as_given():
  s = slices.parse('v5e:2x2')
  assert (s.topology, s.chips, s.hbm_gib) == ('v5e:2x2', 4, 16)
  assert s.topology_kwargs() == {}


@pytest.mark.parametrize('name, says', [
    ('v3-8', 'not a Cloud TPU accelerator type'),
    ('tpu', 'not a Cloud TPU accelerator type'),
    ('v4-24', 'power-of-two'),
    ('v4-4', 'smallest v4 slice'),
    ('v9:2x2', 'not a TPU topology'),
])
def test_unknown_names_are_refused_with_examples(name, says):
  with pytest.raises(slices.UnknownSlice, match=says):
    slices.parse(name)

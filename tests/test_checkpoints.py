"""How the train state is written (resizer/checkpoints.py); what a resume
does with what it finds: tests/test_run_record.py."""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from resizer import checkpoints


def replicated_state():
  """A state replicated over the 8 forced CPU devices, its array of a shape
  no other test saves (a slicing program compiled before would not show)."""
  replicated = NamedSharding(jax.make_mesh((8,), ('data',)), P())
  return {'step': jax.device_put(np.int32(2), replicated),
          'params': {'w': jax.device_put(
              np.arange(24 * 5, dtype=np.float32).reshape(24, 5), replicated)}}


def test_on_cpu_each_array_is_written_whole_and_reads_back_anywhere(
    tmp_path, caplog):
  """Orbax's replica-parallel save would cut each replicated array into one
  slice per device (24 rows: 3 per device), compiling a slicing program for
  each: on CPU, where the devices share the host's memory, the state is
  written whole instead. Orbax's standard reader (checkpoints.load) reads it
  back on one device."""
  state = replicated_state()
  mgr = checkpoints.manager(tmp_path, keep=1, async_save=False)
  with jax.log_compiles(True):
    checkpoints.save(mgr, state)
  mgr.close()
  compiled = [r.getMessage() for r in caplog.records
              if 'Compiling' in r.getMessage()]
  assert not [m for m in compiled if 'jit(slice)' in m], compiled
  restored = checkpoints.load(tmp_path)
  assert int(restored['step']) == 2
  np.testing.assert_array_equal(restored['params']['w'],
                                np.asarray(state['params']['w']))

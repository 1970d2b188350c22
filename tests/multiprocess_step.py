"""Runs one step of the trainer's sharded step as one of N processes.

  python tests/multiprocess_step.py OUT.npz NUM_PROCESSES PROCESS_ID PORT LOCAL_DEVICES

Used by test_multiprocess.py: each process feeds its rows of the global batch
of tests/data_parallel_case.py, and the state after the step must be the
single-device full-batch reference step's.
"""

import os
import sys

out, num_processes, process_id, port, local_devices = (
    sys.argv[1], *map(int, sys.argv[2:]))
os.environ['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={local_devices}'
os.environ['JAX_PLATFORMS'] = 'cpu'
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

if num_processes > 1:
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}',
                             num_processes=num_processes, process_id=process_id)

import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from resizer import tasks, train  # noqa: E402
from resizer.models import composite  # noqa: E402
from tests import data_parallel_case as case  # noqa: E402

config = case.config()
mesh = jax.sharding.Mesh(np.array(jax.devices()), (train.AXIS,))
model = composite.build_model(config, bn_axis_name=train.AXIS)
tx, schedule = case.optimizer(config)
step = train.make_train_step(model, tx, tasks.get_task(config), schedule, mesh)

replicated = NamedSharding(mesh, P())
state = jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(replicated, np.asarray(x)),
    case.initial_state(config))
share = case.GLOBAL_BATCH // num_processes
rows = slice(process_id * share, (process_id + 1) * share)
sharding = NamedSharding(mesh, P(train.AXIS))
batch = {k: jax.make_array_from_process_local_data(sharding, v[rows])
         for k, v in case.batch().items()}
state, metrics = step(state, batch, jax.random.key(1))

# Replicated: every process holds the whole value.
host = lambda x: np.asarray(x.addressable_data(0))  # noqa: E731
leaves = [host(x) for x in jax.tree.leaves(state)]
np.savez(out, *leaves, loss=host(metrics['loss']),
         grad_norm=host(metrics['grad_norm']))

"""Runs the trainer's step on a fixed global batch, as one of N processes.

  python tests/multiprocess_step.py OUT.npz NUM_PROCESSES PROCESS_ID PORT LOCAL_DEVICES

Used by test_multiprocess.py: the parameters after three steps must not
depend on how the same global batch is spread over processes and devices.
"""

import os
import sys

out, num_processes, process_id, port, local_devices = (
    sys.argv[1], *map(int, sys.argv[2:]))
os.environ['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={local_devices}'
os.environ['JAX_PLATFORMS'] = 'cpu'

import jax  # noqa: E402

if num_processes > 1:
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}',
                             num_processes=num_processes, process_id=process_id)

import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from configs import common  # noqa: E402
from resizer import optim, tasks, train  # noqa: E402
from resizer.models import composite  # noqa: E402

GLOBAL_BATCH = 16
config = common.imagenet_config('resizer=learned,res=32,out=16', 'resnet_tiny')
config.model.update(dtype='float32', num_classes=5)
config.optim.update(schedule='constant', learning_rate=0.1)
mesh = jax.sharding.Mesh(np.array(jax.devices()), (train.AXIS,))
model = composite.build_model(config, bn_axis_name=train.AXIS)
tx, schedule = optim.make_optimizer(config.optim, 10, 100)
state = train.make_init(composite.build_model(config), tx, (32, 32), mesh)(
    jax.random.key(0))
step = train.make_train_step(model, tx, tasks.get_task(config), schedule, mesh)

rng = np.random.default_rng(0)
images = rng.integers(0, 256, (GLOBAL_BATCH, 32, 32, 3), dtype=np.uint8)
labels = rng.integers(0, 5, GLOBAL_BATCH)
share = GLOBAL_BATCH // num_processes
rows = slice(process_id * share, (process_id + 1) * share)
sharding = NamedSharding(mesh, P(train.AXIS))
batch = {k: jax.make_array_from_process_local_data(sharding, v[rows])
         for k, v in (('image', images), ('label', labels))}
for i in range(3):
  state, metrics = step(state, batch, jax.random.key(i))

# Replicated: every process holds the whole value.
leaves = [np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(
    {'params': state['params'], 'batch_stats': state['batch_stats']})]
np.savez(out, *leaves, loss=np.asarray(metrics['loss'].addressable_data(0)))

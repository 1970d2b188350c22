"""Test-wide setup: eight forced CPU devices, so sharded code runs as on a
multi-device host. Must run before jax initialises its backends."""

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

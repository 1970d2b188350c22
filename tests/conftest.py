"""Test-wide setup: eight forced CPU devices, so sharded code runs as on a
multi-device host. Must run before jax initialises its backends."""

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# TensorFlow's GCS file system reads these once, when tensorflow is imported;
# they matter only to the tests against the local GCS (test_gcs.py): see
# writes made through TensorStore at once, read in small blocks, and fail
# fast instead of retrying for minutes.
os.environ.setdefault('GCS_STAT_CACHE_MAX_AGE', '0')
os.environ.setdefault('GCS_READ_CACHE_BLOCK_SIZE_MB', '1')
os.environ.setdefault('GCS_RETRY_CONFIG_MAX_RETRIES', '2')
os.environ.setdefault('GCS_RETRY_CONFIG_INIT_DELAY_TIME_US', '10000')

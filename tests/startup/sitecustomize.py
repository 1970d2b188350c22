"""Start-up of every Python process the tests launch: xdist's workers and
the subprocesses (tests/conftest.py puts this directory on PYTHONPATH).

These processes import TensorFlow, JAX and Flax, millions of objects, and
most live for seconds. With CPython's default thresholds the garbage
collector scans those objects again and again while they import, and once
more at exit: 2.5-3 s of a 12.5 s tiny training run in a subprocess. Here
it runs less often and skips the final pass. Neither changes what a program
computes; a product file that relied on a collection at exit to be written
would fail the tests, not pass them.
"""

import atexit
import gc

gc.set_threshold(50_000, 20, 20)  # CPython's default: (700, 10, 10).
# Shutdown collects every object once more; it skips frozen ones.
atexit.register(gc.freeze)

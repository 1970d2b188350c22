#!/usr/bin/env bash
# Runs `python -m MODULE ARGS` on a TPU VM worker, building the virtualenv
# on first use (big_vision's run_tpu.sh). Run from the checkout's root:
#   bash launch/run_tpu.sh resizer.main --config=... --workdir=gs://...
set -euo pipefail
if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  echo "Usage: bash launch/run_tpu.sh MODULE [ARGS...]  (from the checkout's root)"
  [ $# -ge 1 ] && exit 0 || exit 2
fi
venv="${RESIZER_VENV:-$HOME/resizer_venv}"
if [ ! -f "$venv/bin/activate" ]; then
  python3 -m venv "$venv"
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
  pip install -q --upgrade pip
  pip install -q 'jax[tpu]' -e .
else
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
fi
exec python3 -m "$@"

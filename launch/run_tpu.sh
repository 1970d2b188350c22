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
# shellcheck source=launch/lib.sh
. "$(dirname "$0")/lib.sh"
# A virtualenv built from other pins is rebuilt, so
# every host of a slice runs launch/constraints.txt as it is now.
stamp="$(sha256sum launch/constraints.txt | cut -d' ' -f1)"
if [ ! -f "$venv/bin/activate" ] || [ "$(cat "$venv/.constraints" 2>/dev/null)" != "$stamp" ]; then
  python=$(python_for_venv)
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
  pip install -q --upgrade pip
  # The same versions on every host of the slice (see launch/pin.py).
  pip install -q -c launch/constraints.txt 'jax[tpu]' -e .
  echo "$stamp" > "$venv/.constraints"
else
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
fi
exec python3 -m "$@"

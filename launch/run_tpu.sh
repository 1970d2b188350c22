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
# jax needs Python >= 3.11; TPU VM images ship 3.10 (tpu_vm.sh setup
# installs python3.11 next to it).
python_for_venv() {
  local candidate
  for candidate in "${RESIZER_PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] && command -v "$candidate" > /dev/null \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      && { echo "$candidate"; return; }
  done
  echo "run_tpu.sh: no Python >= 3.11 found; install one (sudo apt-get install -y python3.11 python3.11-venv) or set RESIZER_PYTHON" >&2
  exit 2
}
if [ ! -f "$venv/bin/activate" ]; then
  python=$(python_for_venv)
  "$python" -m venv "$venv"
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
  pip install -q --upgrade pip
  # The same versions on every host of the slice (see launch/pin.py).
  pip install -q -c launch/constraints.txt 'jax[tpu]' -e .
else
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
fi
exec python3 -m "$@"

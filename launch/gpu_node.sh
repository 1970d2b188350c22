#!/usr/bin/env bash
# Trains on every GPU of one machine: builds a CUDA virtualenv on first use,
# then runs resizer.main (one process drives all local GPUs).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/gpu_node.sh [--venv=DIR] [--dry-run] -- --config=CONFIG --workdir=DIR [resizer.main flags]

  --venv=DIR   virtualenv to create or reuse (default .venv-gpu)
  --dry-run    print the commands instead of running them
  -h, --help   this text

Example:
  launch/gpu_node.sh -- --config=configs/imagenet_resnet50.py --workdir=runs/r50_learned
USAGE
}

die() { echo "gpu_node.sh: $*" >&2; echo "Run launch/gpu_node.sh --help for usage." >&2; exit 2; }

venv=".venv-gpu" dry_run=0 args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --venv=*) venv="${1#*=}" ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift
        # --dry-run is this script's even after -- (resizer.main has none):
        # appended at the end of a command, it must never launch anything.
        for word in "$@"; do
          if [ "$word" = --dry-run ]; then dry_run=1; else args+=("$word"); fi
        done
        break ;;
    *) die "unknown option '$1'" ;;
  esac
  shift
done
[ ${#args[@]} -gt 0 ] || die "give resizer.main flags after --"
printf '%s\n' "${args[@]}" | grep -q -- '^--config=' || die "--config=... is required after --"
printf '%s\n' "${args[@]}" | grep -q -- '^--workdir=' || die "--workdir=... is required after --"

# shellcheck source=launch/lib.sh
. "$(dirname "$0")/lib.sh"

if [ ! -x "$venv/bin/python" ] || [ "$dry_run" = 1 ]; then
  python=$(python_for_venv)
  run "$python" -m venv "$venv"
  # The versions the tests ran with (see launch/pin.py).
  run "$venv/bin/pip" install -q -c launch/constraints.txt 'jax[cuda12]' -e .
fi
run "$venv/bin/python" -m resizer.main "${args[@]}"

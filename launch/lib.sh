# shellcheck shell=bash
# Shared by the launch scripts: quoting and dry runs. Source it; it expects
# the caller to set dry_run=0|1.

# A word as it would be typed: bare if safe, else in single quotes.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@,+-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# A command as it would be typed.
run_quoted() {
  local out="" word
  for word in "$@"; do out+="$(quote "$word") "; done
  echo "${out% }"
}

# Prints (dry run) or runs a command.
run() {
  if [ "${dry_run:-0}" = 1 ]; then
    run_quoted "$@"
  else
    "$@"
  fi
}

# The Python to build a virtualenv with: jax needs >= 3.11, and
# launch/constraints.txt was resolved for 3.11, so 3.11 comes first
# (RESIZER_PYTHON overrides). TPU VM images ship 3.10.
python_for_venv() {
  local candidate
  for candidate in "${RESIZER_PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] && command -v "$candidate" > /dev/null \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      && { echo "$candidate"; return; }
  done
  echo "no Python >= 3.11 found; install one (sudo apt-get install -y python3.11 python3.11-venv) or set RESIZER_PYTHON" >&2
  exit 2
}

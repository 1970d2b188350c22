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

# Prints (dry run) or runs a command.
run() {
  if [ "${dry_run:-0}" = 1 ]; then
    local out="" word
    for word in "$@"; do out+="$(quote "$word") "; done
    echo "${out% }"
  else
    "$@"
  fi
}

#!/usr/bin/env bash
# Cloud TPU VM lifecycle for this codebase, in the style of big_vision:
# create a VM, copy the code to every worker, run a config on all workers,
# follow the log, watch TensorBoard, delete the VM.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/tpu_vm.sh COMMAND --name=NAME --zone=ZONE [options] [-- ARGS]

Commands:
  create        create the TPU VM (--queued: as a queued resource); given
                resizer.main ARGS after --, it runs the pre-flight first
  setup         copy this checkout (git HEAD) to every worker and make sure
                each has Python >= 3.11
  run           run `python -m resizer.main ARGS` on every worker, in the
                background, after a pre-flight here: the run's train and eval
                steps compiled for --accelerator (resizer.preflight); a run
                that would not fit or compile is refused
  logs          follow worker 0's log
  tensorboard   start TensorBoard here on --workdir (a gs:// path)
  delete        delete the TPU VM (and its queued resource)

Options:
  --name=NAME               TPU VM name (required)
  --zone=ZONE               e.g. us-central2-b (required)
  --project=PROJECT         default: gcloud's configured project
  --accelerator=TYPE        create, and run's pre-flight: e.g. v4-32
                            (default), v5litepod-16, v5p-8, v6e-8
  --version=RUNTIME         create: TPU software version (default: the one
                            Cloud TPU names for the generation: v6e
                            v2-alpha-tpuv6e, v5p v2-alpha-tpuv5, v5e
                            (v5litepod) v2-alpha-tpuv5-lite, v4 and older
                            tpu-ubuntu2204-base)
  --queued                  create/delete: use a queued resource
  --spot                    create: spot capacity (preemptible)
  --data-dir=gs://...       run: TFDS_DATA_DIR on the workers
  --workdir=gs://...        tensorboard: the run's workdir
  --skip-preflight          run/create: launch without compiling here first
  --dry-run                 print the commands instead of running them (the
                            pre-flight still runs: it is local and decides)
  -h, --help                this text

Example:
  launch/tpu_vm.sh create --name=resizer --zone=us-central2-b --accelerator=v4-32
  launch/tpu_vm.sh setup  --name=resizer --zone=us-central2-b
  launch/tpu_vm.sh run    --name=resizer --zone=us-central2-b --data-dir=gs://my-bucket/tfds -- \
      --config=configs/imagenet_resnet50.py --workdir=gs://my-bucket/runs/r50_learned
USAGE
}

die() { echo "tpu_vm.sh: $*" >&2; echo "Run launch/tpu_vm.sh --help for usage." >&2; exit 2; }

command="${1:-}"
case "$command" in
  -h|--help|"") usage; [ -n "$command" ] && exit 0 || exit 2 ;;
  create|setup|run|logs|tensorboard|delete) shift ;;
  *) die "unknown command '$command'" ;;
esac

name="" zone="" project="" accelerator="v4-32" version=""
queued=0 spot=0 data_dir="" workdir="" dry_run=0 skip_preflight=0
run_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --accelerator=*) accelerator="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --queued) queued=1 ;;
    --spot) spot=1 ;;
    --data-dir=*) data_dir="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --dry-run) dry_run=1 ;;
    --skip-preflight) skip_preflight=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift
        # --dry-run is this script's even after -- (resizer.main has none):
        # appended at the end of a command, it must never launch anything.
        for word in "$@"; do
          case "$word" in
            --dry-run) dry_run=1 ;;
            --skip-preflight) skip_preflight=1 ;;
            *) run_args+=("$word") ;;
          esac
        done
        break ;;
    *) die "unknown option '$1'" ;;
  esac
  shift
done

[ -n "$name" ] || [ "$command" = tensorboard ] || die "--name is required"
[ -n "$zone" ] || [ "$command" = tensorboard ] || die "--zone is required"
if [ "$command" = run ]; then
  [ ${#run_args[@]} -gt 0 ] || die "run needs resizer.main arguments after --"
  printf '%s\n' "${run_args[@]}" | grep -q -- '^--config=' || die "run needs --config=... after --"
  printf '%s\n' "${run_args[@]}" | grep -q -- '^--workdir=gs://' \
    || die "run needs --workdir=gs://... after -- (every worker must see it)"
fi
if [ "$command" = tensorboard ]; then
  case "$workdir" in gs://*) ;; *) die "tensorboard needs --workdir=gs://..." ;; esac
fi

# The TPU software version follows the accelerator's generation.
runtime_for() {
  case "$1" in
    v6e-*) echo v2-alpha-tpuv6e ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v5litepod-*|v5e-*) echo v2-alpha-tpuv5-lite ;;
    v2-*|v3-*|v4-*) echo tpu-ubuntu2204-base ;;
    *) return 1 ;;
  esac
}
if [ "$command" = create ] && [ -z "$version" ]; then
  version=$(runtime_for "$accelerator") \
    || die "no default --version for --accelerator=$accelerator; pass --version=RUNTIME"
fi

# shellcheck source=launch/lib.sh
. "$(dirname "$0")/lib.sh"

# The pre-flight: the run's steps compiled here for the slice, before any
# gcloud call (resizer.preflight; it needs the libtpu package here).
preflight() {
  local py="${RESIZER_PYTHON:-python3}" word args=()
  for word in "${run_args[@]}"; do
    case "$word" in --config=*|--config.*) args+=("$word") ;; esac
  done
  [ ${#args[@]} -gt 0 ] || return 0
  if ! "$py" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("libtpu") is None)' 2> /dev/null; then
    echo "tpu_vm.sh: the pre-flight compiles for $accelerator here and needs libtpu: pip install -c launch/constraints.txt -e '.[tpu-compile]' (or pass --skip-preflight)" >&2
    exit 2
  fi
  local check=("$py" -m resizer.preflight --topology="$accelerator" --nosearch_batch "${args[@]}")
  # On stderr, so that a dry run's standard output stays the gcloud commands.
  echo "tpu_vm.sh: pre-flight: $(run_quoted "${check[@]}")" >&2
  if ! "${check[@]}" >&2; then
    echo "tpu_vm.sh: refused: the pre-flight above says this run does not fit $accelerator (pass --skip-preflight to launch anyway)" >&2
    exit 1
  fi
}
if [ "$skip_preflight" = 0 ] && { [ "$command" = run ] || [ "$command" = create ]; }; then
  preflight
fi

common=(--zone="$zone")
[ -n "$project" ] && common+=(--project="$project")
tpu=(gcloud compute tpus tpu-vm)

case "$command" in
  create)
    if [ "$queued" = 1 ]; then
      extra=(); [ "$spot" = 1 ] && extra=(--spot)
      run gcloud compute tpus queued-resources create "$name" --node-id="$name" \
        --accelerator-type="$accelerator" --runtime-version="$version" \
        "${extra[@]}" "${common[@]}"
    else
      extra=(); [ "$spot" = 1 ] && extra=(--spot)
      run "${tpu[@]}" create "$name" --accelerator-type="$accelerator" \
        --version="$version" "${extra[@]}" "${common[@]}"
    fi ;;
  setup)
    run git archive --format=tar.gz -o /tmp/resizer.tar.gz HEAD
    run "${tpu[@]}" scp /tmp/resizer.tar.gz "$name":~/resizer.tar.gz --worker=all "${common[@]}"
    run "${tpu[@]}" ssh "$name" --worker=all "${common[@]}" \
      --command='rm -rf ~/resizer && mkdir -p ~/resizer && tar -xzf ~/resizer.tar.gz -C ~/resizer'
    # jax needs Python >= 3.11; the TPU images ship 3.10.
    run "${tpu[@]}" ssh "$name" --worker=all "${common[@]}" \
      --command='python3 -c "import sys; sys.exit(sys.version_info < (3, 11))" || command -v python3.11 || (sudo apt-get update -q && sudo apt-get install -y -q python3.11 python3.11-venv)' ;;
  run)
    quoted=""
    for word in "${run_args[@]}"; do quoted+=" $(quote "$word")"; done
    env_prefix=""
    [ -n "$data_dir" ] && env_prefix="TFDS_DATA_DIR=$(quote "$data_dir") "
    run "${tpu[@]}" ssh "$name" --worker=all "${common[@]}" \
      --command="cd ~/resizer && ${env_prefix}nohup bash launch/run_tpu.sh resizer.main --jax_distributed=true${quoted} > ~/resizer.log 2>&1 &" ;;
  logs)
    run "${tpu[@]}" ssh "$name" --worker=0 "${common[@]}" --command='tail -F ~/resizer.log' ;;
  tensorboard)
    run tensorboard --logdir="$workdir" ;;
  delete)
    if [ "$queued" = 1 ]; then
      run gcloud compute tpus queued-resources delete "$name" --force --quiet "${common[@]}"
    else
      run "${tpu[@]}" delete "$name" --quiet "${common[@]}"
    fi ;;
esac

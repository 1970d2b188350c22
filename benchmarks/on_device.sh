#!/usr/bin/env bash
# The first check on a GPU or TPU host: the trainer's train step (through
# benchmarks/train_step.py) for no resizer at 224 and the learned resizer
# at 448→224, bfloat16, at a per-device batch a run would use. It prints,
# per setting, images/s, the step-time ratio learned/none (paired rounds),
# MFU against the device's bf16 peak, and XLA's compiled memory beside the
# peak the device reports; one JSON line each, then a table.
#
#   bash benchmarks/on_device.sh                  # ResNet-50, 128 per device
#   PER_DEVICE_BATCH=64 CONFIG=configs/imagenet_densenet.py bash benchmarks/on_device.sh
#
# Every knob is an environment variable (defaults in brackets): CONFIG
# [configs/imagenet_resnet50.py], RESIZERS [none:224,learned:448], OUT_SIZE
# [224], MODEL [the config's], DTYPE [bfloat16], PER_DEVICE_BATCH [128],
# STEPS [20], REPEATS [5]. tests/test_benchmarks.py runs it on CPU with a
# tiny model.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python}"
devices=$("$python" -c 'import jax; print(jax.device_count())')
"$python" -c 'import jax; d = jax.devices()[0]; print(f"{jax.device_count()} x {d.device_kind} ({d.platform})")'
model=()
[ -n "${MODEL:-}" ] && model=(--model="$MODEL")
exec "$python" benchmarks/train_step.py \
  --config="${CONFIG:-configs/imagenet_resnet50.py}" \
  --resizers="${RESIZERS:-none:224,learned:448}" \
  --out_size="${OUT_SIZE:-224}" "${model[@]}" \
  --dtype="${DTYPE:-bfloat16}" \
  --batch_size=$(( ${PER_DEVICE_BATCH:-128} * devices )) \
  --steps="${STEPS:-20}" --repeats="${REPEATS:-5}"

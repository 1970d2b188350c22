#!/usr/bin/env bash
# The TPU memory sweep of benchmarks/README.md: XLA's memory analysis of the
# trainer's train step, compiled for one chip of a Cloud TPU topology (no TPU
# needed; the libtpu package is), per-chip batch 8 to 256, for each model and
# generation: none at 224, learned 448→224 without remat and with
# remat='resizer'. One JSON line per setting goes to OUT (default
# /tmp/tpu_memory_sweep.jsonl).
#
#   pip install -c launch/constraints.txt -e '.[tpu-compile]'
#   bash benchmarks/tpu_memory_sweep.sh [OUT] [MODELS] [TOPOLOGIES] [BATCHES]
#
# Defaults: resnet50,densenet121 on v5e:2x2,v6e:2x2 at 8,32,64,128,256. Each
# ResNet-50 compile takes 1-2 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/tpu_memory_sweep.jsonl}"
models="${2:-resnet50,densenet121}"
topologies="${3:-v5e:2x2,v6e:2x2}"
batches="${4:-8,32,64,128,256}"
for topology in ${topologies//,/ }; do
  for model in ${models//,/ }; do
    config="configs/imagenet_${model%121}.py"
    [ "$model" = densenet121 ] && config=configs/imagenet_densenet.py
    for batch in ${batches//,/ }; do
      python benchmarks/train_step.py --config="$config" --dtype=bfloat16 \
        --resizers=none:224,learned:448:none,learned:448:resizer \
        --batch_size="$batch" --memory_only --topology="$topology" \
        2> /dev/null | grep '^{' | sed "s/^{/{\"topology\": \"$topology\", /" >> "$out"
    done
  done
done

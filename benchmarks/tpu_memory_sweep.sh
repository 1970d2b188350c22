#!/usr/bin/env bash
# The TPU memory sweep of benchmarks/README.md: XLA's memory analysis of the
# trainer's train step, compiled for one chip of a Cloud TPU topology (no TPU
# needed; the libtpu package is), per-chip batch 8 to 256, for each model and
# generation: none at 224, learned 448→224 without remat and with
# remat='resizer'. One JSON line per setting goes to OUT (default
# /tmp/tpu_memory_sweep.jsonl); at the end, the table of everything in OUT
# (benchmarks/README.md's).
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
python - "$out" <<'TABLE'
import collections, json, sys
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
  r = json.loads(line)
  kind = 'none' if r['resizer'] == 'none' else f"learned_{r['remat']}"
  rows[r['topology'], r['model'], r['batch_size']][kind] = r
print('| chip | model | per-chip batch | none 224: MiB/img, GiB | learned 448, no remat | learned 448, remat=resizer |')
print('|---|---|---|---|---|---|')
for (topology, model, batch), by in sorted(rows.items()):
  base = by.get('none')
  cells = []
  for kind in ('none', 'learned_none', 'learned_resizer'):
    r = by.get(kind)
    if r is None or base is None:
      cells.append('–')
      continue
    ratio = '' if kind == 'none' else (
        f" ({r['temp_mib_per_image'] / base['temp_mib_per_image']:.2f}x)")
    cells.append(f"{r['temp_mib_per_image']}{ratio}, {r['total_mib'] / 1024:.2f}")
  print(f"| {topology.split(':')[0]} | {model} | {batch} | " + ' | '.join(cells) + ' |')
TABLE

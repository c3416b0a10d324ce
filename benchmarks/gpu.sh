#!/usr/bin/env bash
# The GPU benchmark: one prepared run, under 5 minutes on one GPU. Writes one JSON file per measurement
# into $OUT (default ./bench-gpu) and prints each as it lands.
#
#   bash benchmarks/gpu.sh                 # on a machine with CUDA
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu.sh   # the same commands on the CPU, smaller (a smoke run)
#   DRY_RUN=1 bash benchmarks/gpu.sh       # print the commands only
#
# Measures: the forward of STG-CMA vs the bare frozen backbone in bf16, with and without torch.compile,
# for the embedded default's backbone (synth-vit) and CLIP ViT-B/16 Tiny; training-step time (clips/s =
# batch / step) and peak memory for CLIP ViT-B/16 Tiny and Swin-B Tiny against LAVISH, linear probe,
# full fine-tuning and activation checkpointing (every block, 3 in 4), one process per variant and one
# round; SynthAV generation per clip (what one data-loader worker delivers), to set beside the training
# step's clips/s.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-bench-gpu}
PY=${PY:-python}
DTYPE=bfloat16
BATCH=8
REPEATS=5
if [ "${QUICK:-0}" = "1" ]; then BATCH=2; REPEATS=1; fi
if [ "$DEVICE" = "cpu" ]; then DTYPE=float32; fi
mkdir -p "$OUT"

step() {  # step NAME ARGS...: one measurement into $OUT/NAME.json
    local name=$1; shift
    if [ "${DRY_RUN:-0}" = "1" ]; then echo "$PY -m stgcma bench $*"; return; fi
    echo "== $name" >&2
    "$PY" -m stgcma bench "$@" --json | tee "$OUT/$name.json"
}

for preset in synth-vit clip-b16-tiny; do
    step "model_${preset}_${DTYPE}" model --preset "$preset" --device "$DEVICE" --dtype "$DTYPE" --repeats "$REPEATS"
    step "model_${preset}_${DTYPE}_compiled" model --preset "$preset" --device "$DEVICE" --dtype "$DTYPE" \
        --repeats "$REPEATS" --compile
done
for preset in clip-b16-tiny swin-b-tiny; do
    step "train_${preset}" train --preset "$preset" --device "$DEVICE" --batch "$BATCH" --rounds 1
done
step synth_224 synth --size 224 --repeats 20
if [ "${DRY_RUN:-0}" != "1" ]; then
    "$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.stem != "summary"}
summary = {"forward_ratio_vs_backbone": {k: v["ratio_vs_frozen_trunk"] for k, v in rows.items() if k.startswith("model_")}}
for k, v in rows.items():
    if k.startswith("train_"):
        batch = v.get("batch", 1)
        summary[k] = {name: {"clips_per_s": batch / r["step_seconds"], "peak_MiB": r["peak_bytes"] / 2**20}
                      for name, r in v["variants"].items()}
if "synth_224" in rows:
    summary["synthav_clips_per_s_per_worker"] = 1 / rows["synth_224"]["clip_median"]
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
PY
fi

#!/bin/bash
# The PTB homotopy probes of benchmarks/ptb_homotopy_probes.sh (the same configs and overrides), trained side by
# side on one GPU, each for MINUTES of training time (train.max_minutes: validations not counted) instead of a
# number of steps, then scored on the test split as that script scores them (greedy reconstructions from the
# posterior means: rec, KL, MI, AU, BLEU with tokenize="none", exact matches). Where a CPU trains a probe for a few
# epochs in an hour, a GPU trains each for tens of epochs in minutes: the probes' later epochs, where
# regularisation shows, become measurable. Precision fp32 (PRECISION, environment, overrides it).
# DATA (environment, default ../shared/data/ptb) is the PTB folder, DEVICE (default cuda) the device. One line per probe goes to OUT/log.txt
# (PROBES_OUT, environment, default runs/probes_gpu), with the epochs and steps it trained. Run from the repository root:
#   bash benchmarks/ptb_homotopy_probes_gpu.sh MINUTES PROBE [PROBE ...]
set -euo pipefail
MINUTES=$1; shift
OUT=${PROBES_OUT:-runs/probes_gpu}
mkdir -p "$OUT"

probe() {  # train one probe on the GPU, then score it on the test split; one line in $OUT/log.txt
  local name=$1 sets=() kv
  local overrides; overrides=$(PRECISION=${PRECISION:-fp32} DRY_RUN=1 bash benchmarks/ptb_homotopy_probes.sh 0 0 "$name")
  for kv in ${overrides#*:} train.max_minutes="$MINUTES" train.device="${DEVICE:-cuda}" data.source="${DATA:-../shared/data/ptb}"; do
    sets+=(--set "$kv")
  done
  textvae train --config benchmarks/ptb_homotopy_probe_base.yaml --out "$OUT/$name" --quiet "${sets[@]}" \
    > "$OUT/$name.train.txt" 2>&1 || { echo "$name: training failed (see $OUT/$name.train.txt)" >> "$OUT/log.txt"; return; }
  local scores trained
  scores=$(textvae evaluate "$OUT/$name" --split test --iw-samples 0 --samples 0 --device "${DEVICE:-cuda}" 2>&1 \
    | grep -E "^(rec|kl|bleu|exact_match|mi|au|neg_elbo) " | tr '\n' ' ')
  trained=$(python3 - "$OUT/$name/metrics.jsonl" <<'EOF'
import json, statistics, sys
lines = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
valid = [line for line in lines if line["split"] == "valid"]
speeds = [line["tokens_per_s"] for line in lines if line["split"] == "train"]
speed = f"{statistics.median(speeds):.0f}" if speeds else "-"
print(f"{lines[-1]['step']} steps, {len(valid)} validations, {speed} target tokens/s;",
      "valid rec by validation:", " ".join(f"{line['rec']:.2f}" for line in valid))
EOF
) || trained="(no metrics)"
  echo "== $name, $MINUTES min on the GPU: ${overrides#*:} :: $trained :: $scores" >> "$OUT/log.txt"
}

for name in "$@"; do probe "$name" & done
wait

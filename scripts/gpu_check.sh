#!/usr/bin/env bash
# One GPU check, for the day a GPU is lent: every number the README's GPU rows need, in one JSON.
#
#   scripts/gpu_check.sh                # on one CUDA GPU; under 8 minutes on an H100/H200
#   scripts/gpu_check.sh --cpu-smoke    # anywhere: same script and JSON keys, on CPU (tiny
#                                       # training configs; generation at the 1B's widths)
#   scripts/gpu_check.sh --only lora_1b # one section (lora_1b, qlora_4b, pipeline, generation)
#
# Writes build/gpu-check/gpu_check.json (--out DIR to change): lora_1b (Gemma 3 1B LoRA at 1024
# tokens: tokens/s, MFU, peak memory vs planning/memory.py), qlora_4b (4B QLoRA: the same,
# memory first), pipeline (`submit --local` on the embedded tiny model, bf16 + packing), and
# generation (batched greedy tokens/s of the 1B architecture). Real-size models are built from
# their configs with random weights: no hub access is needed. A failing section is recorded in
# the JSON (ok: false, error) and the others still run; the exit code is 1 if any failed.
#
# The JSON is rewritten after each section, so the 8-minute limit (a hung step must not hold a
# billed machine) still leaves what was measured; a section not reached has "ok": null.
# Python: the project's environment via `uv run` when uv is here, else python3 (PYTHON=... to
# choose). lora_1b, qlora_4b and generation need torch, transformers, peft, trl (bitsandbytes
# for 4B); pipeline needs the whole project environment (kfp, datasets...), as `submit` does.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
if [[ -n "${PYTHON:-}" ]]; then
    run=("$PYTHON")
elif command -v uv >/dev/null 2>&1; then
    run=(uv run --frozen python)
else
    run=(python3)
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
limit=480  # GPU_CHECK_LIMIT_S to change; the CPU smoke gets 900
for arg in "$@"; do [[ "$arg" == --cpu-smoke ]] && limit=900; done
limit=${GPU_CHECK_LIMIT_S:-$limit}
exec timeout --signal=TERM --kill-after=20 "$limit" "${run[@]}" -m benchmarks.gpu_check "$@"

#!/usr/bin/env bash
# The suite's GPU cases in one prepared call (bench/gpu.py): SD1.5 512² TI and DreamArtist at batch 1
# and 8, SDXL 1024² low-memory; a table on screen and JSON in bench/results/, in under 8 minutes on an
# H100/H200. Options pass through: --dry-run, --device cpu --tiny (smoke run), --only NAME, --steps N.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONWARNINGS=ignore
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# A hard stop a minute past gpu.py's own 8-minute budget (which skips cases that would not fit).
exec timeout 540 "$PY" bench/gpu.py "$@"

#!/usr/bin/env bash
# The best end-to-end job that exists today, offline: build a tiny base, inspect and audit the
# data, preview the exact trained tokens, fine-tune with LoRA, list the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
TS=.venv/bin/tunesmith
export HF_HUB_OFFLINE=1
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "1/6 build the tiny offline base model"
.venv/bin/python examples/demo/build_base.py outputs/demo/base
step "2/6 inspect the data"
$TS data inspect examples/data/support_tickets.jsonl
step "3/6 audit the data"
$TS audit examples/demo/demo.yaml --fail-on error
step "4/6 preview tokenization (trained tokens highlighted)"
$TS preview examples/demo/demo.yaml --rows 2
step "5/6 train (LoRA SFT)"
$TS train examples/demo/demo.yaml --overwrite
step "6/6 the run"
$TS runs outputs/demo
echo "run directory: outputs/demo/run (config.yaml, run.json, metrics.jsonl, model/)"

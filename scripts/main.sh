#!/usr/bin/env bash
# The main job: set up, then compile and train the seed notebook's network (MLP(3, [4, 4, 1]) on
# its four examples), draw its loss curve and check its gradient against sympy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/exprgrad compile examples/seed_mlp.exg -o out/seed_mlp.py
.venv/bin/exprgrad train examples/seed_mlp.exg --plot out/seed_loss.png --save out/seed_params.json
.venv/bin/exprgrad check examples/seed_mlp.exg > out/seed_check.txt && tail -n 1 out/seed_check.txt
echo "wrote out/seed_mlp.py, out/seed_loss.png, out/seed_params.json, out/seed_check.txt"

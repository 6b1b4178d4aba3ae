#!/usr/bin/env bash
# The install route the docs give for machines that have no checkout (Dask workers, a cluster):
# build a wheel from the checkout, install it with the [dask] extra into a fresh virtual environment,
# and run `nnctl --version` and a short sweep (2 trials, 1 epoch, local pool) from outside the checkout.
#
#   .ci/wheel.sh        # run by .ci/run after pytest; PYTHON picks the interpreter (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)
WORK=$(mktemp -d /tmp/nnctl-wheel.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
say() { printf '[wheel] %s\n' "$*"; }

"${PYTHON:-python3}" -m pip wheel . --no-deps --quiet -w "$WORK/dist"
WHEEL=$(echo "$WORK"/dist/nnctl-*.whl)
[ -f "$WHEEL" ] || { say "FAIL: no wheel in $WORK/dist"; exit 1; }
say "built $(basename "$WHEEL")"

"${PYTHON:-python3}" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet -c "$ROOT/constraints.txt" "$WHEEL[dask]"
"$WORK/venv/bin/python" -c "import distributed" || { say "FAIL: the [dask] extra did not install"; exit 1; }

cd "$WORK"  # away from the checkout: the installed wheel, not the source tree, must do the work
"$WORK/venv/bin/nnctl" --version
"$WORK/venv/bin/nnctl" sweep "$ROOT/configs/iris.yaml" --grid 'training.learning_rate=[0.05, 0.1]' \
  --set training.epochs=1 --jobs 2 --out "$WORK/sweep" --quiet
trials=$(find "$WORK/sweep" -name trial.json | wc -l)
[ "$trials" = 2 ] && [ -f "$WORK/sweep/best.yaml" ] || { say "FAIL: expected 2 trials and best.yaml"; exit 1; }
say "OK: wheel installed with [dask], nnctl --version and a 2-trial sweep ran ($(($(date +%s) - START)) s)"

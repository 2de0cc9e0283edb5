#!/usr/bin/env bash
# SCALE-Sim v3.0.0 in its own venv (bench/.venv-scalesim), with numpy < 2 as it
# needs, for scripts/scalesim_compare.py and bench/bench_sim.py. Not needed by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=bench/.venv-scalesim
if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "scalesim==3.0.0" "numpy<2"

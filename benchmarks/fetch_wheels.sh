#!/usr/bin/env bash
# Downloads the wheels listed in benchmarks/accelerator_wheels.txt into benchmarks/wheels/
# (git-ignored; the device call carries it) for the lent GPU machines' Python 3.12 x86-64.
#   bash benchmarks/fetch_wheels.sh
# --no-deps: list every missing dependency in the txt file (each wheel's own needs:
# unzip -p benchmarks/wheels/NAME-*.whl '*/METADATA' | grep ^Requires-Dist).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p benchmarks/wheels
mapfile -t reqs < <(grep -v '^[[:space:]]*#' benchmarks/accelerator_wheels.txt | grep -v '^[[:space:]]*$')
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d benchmarks/wheels "${reqs[@]}"
ls -l benchmarks/wheels
du -sh benchmarks/wheels

#!/usr/bin/env bash
# One entry point for every job. Each command creates/uses .venv, installs the locked set
# (requirements.lock) and the project, and runs the job. Usage: bash launch.sh <command> [flags...]
#   demo        train `base` and `din` on the embedded synthetic data, print a results table
#   test        ruff check, then the test suite (what CI runs)
#   train       python -m seqrec_jax.main [flags...]   e.g. --config=seqrec_jax/configs/din.py:synthetic
#   data        python -m seqrec_jax.data [flags...]   prepare / describe a dataset
#   ablation    attention-unit x activation x normaliser sweep   (experiments/attention_ablation.py)
#   din_table   the DIN paper's Table 3 comparison               (experiments/din_table.py)
#   din_reg     DIN paper's regularisers (Table 4, Fig. 4)       (experiments/din_reg.py)
#   mmoe        MMoE synthetic study + census multi-task table   (experiments/mmoe_synthetic.py, census_*.py)
#   mmoe_paper  MMoE paper's synthetic experiment, its protocol   (experiments/mmoe_paper.py)
#   dcn         DNN vs DCN vs DCNv2 table                        (experiments/dcn_table.py)
#   video       short-video study: SENet, LHUC, video heads, fusion, pre-ranker (experiments/video.py)
#   incremental warm starts: daily retrain vs hourly embeddings-only updates (experiments/incremental.py)
#   funnel      retrieval channels -> pre-rank -> DIN -> re-rank, end to end (experiments/funnel.py)
#   cold_start  warm vs new items vs new users, the unknown-id bucket (experiments/cold_start.py)
#   multihost   N local processes with jax.distributed on 127.0.0.1 (benchmarks/multihost.sh)
#   bench       DIN throughput/latency vs PyTorch peers           (benchmarks/din_throughput.py)
#   lock        regenerate requirements.lock from pyproject.toml  (docs/development.md)
set -euo pipefail
cd "$(dirname "$0")"
cmd="${1:-demo}"; shift || true

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

# The locked set (tests/test_lock.py keeps it in step with pyproject.toml); `bash launch.sh lock`
# regenerates it, `bash launch.sh lock --upgrade` moves it to the newest releases.
LOCK_CMD=(.venv/bin/uv pip compile pyproject.toml --extra test --extra data --universal
          --python-version 3.11 --custom-compile-command "bash launch.sh lock" -o requirements.lock)

setup() {  # setup [extras]: the locked set, then the project itself without dependencies; extras
  # outside the lock (peers) are resolved with the lock as constraints. Idempotent: reinstalls
  # only when requirements.lock, pyproject.toml or the extras change.
  local extras="${1:-}"
  if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
  local sum; sum=$(cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
  local stamp=".venv/.installed-lock-${sum}${extras:+-${extras//,/_}}"
  if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r requirements.lock
    .venv/bin/python -m pip install -q --no-deps -e .
    if [ -n "$extras" ]; then
      .venv/bin/python -m pip install -q -c requirements.lock -e ".[${extras}]"
    fi
    touch "$stamp"
  fi
}

case "$cmd" in
  demo)      setup; exec .venv/bin/python -m experiments.demo "$@" ;;
  test)      setup
             .venv/bin/ruff check .   # lint first (config: [tool.ruff] in pyproject.toml)
             exec .venv/bin/python -m pytest -q -n auto --dist loadfile tests "$@" ;;  # xdist: one worker per core, a file per worker
  train)     setup; exec .venv/bin/python -m seqrec_jax.main "$@" ;;
  data)      setup; exec .venv/bin/python -m seqrec_jax.data "$@" ;;
  ablation)  setup; exec .venv/bin/python -m experiments.attention_ablation "$@" ;;
  din_table) setup; exec .venv/bin/python -m experiments.din_table "$@" ;;
  din_reg)   setup; exec .venv/bin/python -m experiments.din_reg "$@" ;;
  mmoe)      setup
             .venv/bin/python -m experiments.mmoe_synthetic "$@"
             exec .venv/bin/python -m experiments.census_multitask "$@" ;;
  mmoe_paper) setup; exec .venv/bin/python -m experiments.mmoe_paper "$@" ;;
  dcn)       setup; exec .venv/bin/python -m experiments.dcn_table "$@" ;;
  video)     setup; exec .venv/bin/python -m experiments.video "$@" ;;
  incremental) setup; exec .venv/bin/python -m experiments.incremental "$@" ;;
  funnel)    setup; exec .venv/bin/python -m experiments.funnel "$@" ;;
  cold_start) setup; exec nice -n 10 .venv/bin/python -m experiments.cold_start "$@" ;;
  multihost) setup; exec bash benchmarks/multihost.sh "$@" ;;
  bench)     setup peers
             # DeepCTR (TF/Keras) peer in its own venv: TF must not enter .venv (tfds changes
             # code paths when TF is importable). A failed install only drops that peer.
             if [ ! -x .venv-tf/bin/python ]; then
               { "$PY" -m venv .venv-tf && .venv-tf/bin/python -m pip install -q \
                   'deepctr==0.9.4' 'tensorflow-cpu==2.21.0' 'tf-keras==2.21.0'; } \
                 || echo "DeepCTR/TensorFlow peer could not be installed; benchmarking without it"
             fi
             exec .venv/bin/python -m benchmarks.din_throughput "$@" ;;
  lock)      setup; exec "${LOCK_CMD[@]}" "$@" ;;
  *) echo "unknown command '$cmd' (see the header of launch.sh)"; exit 2 ;;
esac

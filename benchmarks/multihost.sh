#!/usr/bin/env bash
# N local processes joined by jax.distributed on 127.0.0.1: a multi-host run on one machine.
#
#   bash launch.sh multihost [-n PROCESSES] [-d DEVICES_PER_PROCESS] [seqrec_jax.main flags...]
#   bash benchmarks/multihost.sh -n 2 -d 2 --config=seqrec_jax/configs/test.py --workdir=/tmp/mh
#
# -n  processes (default 2). Each runs `python -m seqrec_jax.main --coordinator_address=
#     127.0.0.1:PORT --num_processes=N --process_id=i <flags>`; process 0 is the coordinator.
# -d  forced CPU devices per process (default 2; XLA_FLAGS=--xla_force_host_platform_device_
#     count). -d 0 uses the machine's accelerators instead, one per process (--local_device_ids=i).
# Flags default to the synthetic DIN run in runs/multihost. Process 0 prints to this terminal;
# every process logs to $LOGDIR/<i>.log (default: a temp dir). If one process fails the others
# are stopped and the script exits with its status. PORT overrides the coordinator port.
set -euo pipefail
cd "$(dirname "$0")/.."
N=2
D=2
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N="$2"; shift 2 ;;
    -d) D="$2"; shift 2 ;;
    *) break ;;
  esac
done
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  args=(--config=seqrec_jax/configs/din.py:synthetic --workdir=runs/multihost)
fi
PORT="${PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
LOGDIR="${LOGDIR:-$(mktemp -d -t multihost.XXXXXX)}"
mkdir -p "$LOGDIR"
echo "multihost: $N processes x ${D} CPU devices (0 = accelerators), coordinator 127.0.0.1:$PORT, logs in $LOGDIR" >&2

pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap stop_all INT TERM

for ((i = 0; i < N; i++)); do
  env_=()
  extra=()
  if [ "$D" -gt 0 ]; then
    env_=(JAX_PLATFORMS=cpu "XLA_FLAGS=--xla_force_host_platform_device_count=$D ${XLA_FLAGS:-}")
  else
    extra=(--local_device_ids="$i")
  fi
  cmd=(env "${env_[@]}" "$PY" -m seqrec_jax.main --coordinator_address="127.0.0.1:$PORT"
       --num_processes="$N" --process_id="$i" "${extra[@]}" "${args[@]}")
  if [ "$i" -eq 0 ]; then
    "${cmd[@]}" > >(tee "$LOGDIR/0.log") 2> >(tee -a "$LOGDIR/0.log" >&2) &
  else
    "${cmd[@]}" >"$LOGDIR/$i.log" 2>&1 &
  fi
  pids+=($!)
done

status=0
running=("${pids[@]}")
# Wait for every process; the first failure stops the rest (they would hang in collectives).
while [ ${#running[@]} -gt 0 ]; do
  set +e
  wait -n -p done_pid "${running[@]}"
  rc=$?
  set -e
  left=()
  for p in "${running[@]}"; do [ "$p" = "${done_pid:-}" ] || left+=("$p"); done
  running=("${left[@]}")
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
    status=$rc
    for ((i = 0; i < N; i++)); do
      if [ "${pids[$i]}" = "${done_pid:-}" ]; then
        echo "multihost: process $i exited with status $rc; stopping the others. Its log tail:" >&2
        tail -n 30 "$LOGDIR/$i.log" >&2 || true
      fi
    done
    stop_all
  fi
done
exit "$status"

# Sourced by scripts/setup.sh and scripts/ops-tools.sh: one way to run a slow set-up step.
#   step "what it does" LOGFILE command args...
# prints "what it does …" at the start, "still …" every STEP_HEARTBEAT_S seconds (30), and "done in Ns" or the
# log's tail and the exit code on failure. Plain text only: no colours, no carriage returns (logs and CI read it).
STEP_HEARTBEAT_S=${STEP_HEARTBEAT_S:-30}

step() {
  local what=$1 log=$2
  shift 2
  local t0=$SECONDS
  echo "$what ..."
  "$@" >"$log" 2>&1 &
  local pid=$!
  while ! wait_for_pid "$pid" "$STEP_HEARTBEAT_S"; do
    echo "  still at it after $((SECONDS - t0))s: $what (log: $log)"
  done
  local rc=0
  wait "$pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "$what: FAILED (exit $rc) after $((SECONDS - t0))s; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    return "$rc"
  fi
  echo "  done in $((SECONDS - t0))s: $what"
}

# true once $1 has exited, false if it is still running after $2 seconds
wait_for_pid() {
  local pid=$1 i=0
  while [ "$i" -lt "$2" ]; do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 1
    i=$((i + 1))
  done
  ! kill -0 "$pid" 2>/dev/null
}

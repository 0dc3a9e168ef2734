#!/usr/bin/env bash
# The standard meshbench set (issue 10), run by `make bench-load` inside
# `meshsmoke -exec`, which provides two meshd replicas (send limits lifted),
# nats-server, PostgreSQL and HAProxy in MESHSTACK_* variables.
#   BENCH_ONLY="burst steady"  run a subset;  BENCH_OUT=dir  keep JSON reports there
set -uo pipefail
: "${MESHSTACK_DATABASE_URL:?run me through meshsmoke -exec (make bench-load)}"
bin=${MESHSTACK_BIN:-bin}
only=${BENCH_ONLY:-burst steady idle storm}
out=${BENCH_OUT:-}
export MESHBENCH_TOKEN
MESHBENCH_TOKEN=$(DATABASE_URL=$MESHSTACK_DATABASE_URL "$bin/meshd" token create --user bench) || exit 1
a=$MESHSTACK_A_URL b=$MESHSTACK_B_URL
pids="--pid $MESHSTACK_A_PID --pid $MESHSTACK_B_PID"
status=0

bench() { # name, meshbench args…
  local name=$1; shift
  case " $only " in *" $name "*) ;; *) return 0 ;; esac
  echo "=== $name: meshbench $*"
  local keep=()
  [ -n "$out" ] && mkdir -p "$out" && keep=(--json-out "$out/$name.json")
  "$bin/meshbench" "$@" "${keep[@]}" || status=1
  echo
}

# First, on fresh replicas, so the RSS growth per connection is not hidden
# by heap an earlier workload left behind.
bench idle   idle   --url "$a" --url "$b" $pids --conns 2000
bench burst  burst  --url "$a" --url "$b" $pids --peers 100 --msgs 1000 --window 32
bench steady steady --url "$a" --url "$b" $pids --rate 1000 --duration 20s --peers 20
# Last: it kills replica A. Clients go through HAProxy so they can reattach on
# B. Meshes of 50 (half of MAX_CONNECTIONS_PER_MESH): the dead replica's
# presences still count against a mesh's cap until they are cleaned up, so
# full meshes measure that cap, not the reattach path (docs/benchmarks.md).
bench storm  storm  --url "$MESHSTACK_LB_URL" $pids --conns 2000 --mesh-size 50 --kill-cmd "kill -9 $MESHSTACK_A_PID"
exit $status

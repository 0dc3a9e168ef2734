#!/usr/bin/env bash
# Runs every Go fuzz target (func Fuzz… in *_test.go) for FUZZTIME each
# (default 2000x: two thousand executions). A crasher fails the run and is
# kept by Go under the package's testdata/fuzz/<target>/, where `go test`
# replays it from then on: commit it with the fix.
#
# The default is a count, not a duration: with a duration, Go 1.26's fuzz
# coordinator can report a bare "context deadline exceeded" at the end of
# -fuzztime without any crasher (golang/go#75804, fixed in Go 1.27) — seen
# here once in CI on FuzzOpenDM. A count has no deadline to race.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-2000x}
status=0
while IFS=: read -r file _ line; do
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$line")
  pkg=./$(dirname "$file")
  echo "fuzz $pkg $name ($t)"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; status=1; }
done < <(grep -rn --include='*_test.go' '^func Fuzz' . | sort)
rm -f /tmp/fuzz.$$.log
exit $status

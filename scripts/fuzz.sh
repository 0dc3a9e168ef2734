#!/usr/bin/env bash
# Runs every Go fuzz target (func Fuzz… in *_test.go) for FUZZTIME each
# (default 1s). A crasher fails the run and is kept by Go under the
# package's testdata/fuzz/<target>/, where `go test` replays it from then
# on: commit it with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-1s}
status=0
while IFS=: read -r file _ line; do
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$line")
  pkg=./$(dirname "$file")
  echo "fuzz $pkg $name ($t)"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; status=1; }
done < <(grep -rn --include='*_test.go' '^func Fuzz' . | sort)
rm -f /tmp/fuzz.$$.log
exit $status

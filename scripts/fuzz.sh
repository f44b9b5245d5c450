#!/usr/bin/env bash
# Runs every Go fuzz target in the module for FUZZTIME each (default 10s).
# A target that finds a crash fails the run and leaves the input under
# the package's testdata/fuzz/ for `go test` to replay.
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
n=0
for pkg in $($GO list ./...); do
  for target in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz: $pkg $target ($FUZZTIME)"
    $GO test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >/tmp/keyhole-fuzz.log 2>&1 || { cat /tmp/keyhole-fuzz.log; exit 1; }
    n=$((n + 1))
  done
done
if [ "$n" -eq 0 ]; then echo "fuzz: no fuzz targets found" >&2; exit 1; fi
echo "fuzz: $n targets passed"

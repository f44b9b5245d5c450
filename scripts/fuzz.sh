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
    if ! $GO test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 2s "$pkg" >/tmp/keyhole-fuzz.log 2>&1; then
      # Go 1.26's fuzz coordinator can report a bare "context deadline
      # exceeded" at the end of -fuzztime when the machine is busy,
      # without any failing input (go.dev/issue/75804, fixed in Go 1.27).
      # That case, and only that case, passes if the seed corpus replays
      # cleanly: a real finding always writes "Failing input written". Minimizing is capped at 2 s so a
      # worker does not spend the whole budget shrinking one input.
      if grep -q 'Failing input written' /tmp/keyhole-fuzz.log || ! grep -q '^    context deadline exceeded$' /tmp/keyhole-fuzz.log; then
        cat /tmp/keyhole-fuzz.log; exit 1
      fi
      echo "fuzz: WARNING: $target hit the Go fuzz-coordinator deadline race (go.dev/issue/75804) with no failing input; replaying its corpus instead"
      $GO test -count=1 -run "^${target}\$" "$pkg" >/tmp/keyhole-fuzz.log 2>&1 || { cat /tmp/keyhole-fuzz.log; exit 1; }
    fi
    n=$((n + 1))
  done
done
if [ "$n" -eq 0 ]; then echo "fuzz: no fuzz targets found" >&2; exit 1; fi
echo "fuzz: $n targets passed"

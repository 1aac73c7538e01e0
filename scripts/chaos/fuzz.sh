#!/usr/bin/env bash
# Runs every fuzz target of the chaos suite, one at a time, for FUZZTIME
# each (default 5m), then copies the corpus each run built (in the Go
# build cache) into the package's testdata/fuzz/<target>/, so that the
# inputs the fuzzer found become seeds of the ordinary `go test ./...`.
#
#   scripts/chaos/fuzz.sh                 # all targets, 5 minutes each
#   FUZZTIME=30s scripts/chaos/fuzz.sh FuzzFold
#
# FUZZ_PARALLEL sets the fuzzing workers (default 1: the machine is shared).
# The figures (executions, new interesting inputs) are in the last lines
# of each target's log, printed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."

fuzztime="${FUZZTIME:-5m}"
parallel="${FUZZ_PARALLEL:-1}"
logdir="${FUZZ_LOGDIR:-$(mktemp -d)}"
mkdir -p "${logdir}"
targets=(
  "FuzzDecodeEvent ./internal/jobs/"
  "FuzzFold ./internal/jobs/"
  "FuzzParseBinding ./internal/cfapi/wire/"
  "FuzzCheckResponse ./internal/cfapi/"
  "FuzzPlan ./internal/planner/"
)
only=" $* "
module=$(go list -m)
cache="$(go env GOCACHE)/fuzz"

for t in "${targets[@]}"; do
  set -- $t
  name=$1 pkg=$2
  if [ "${only}" != "  " ] && [[ "${only}" != *" ${name} "* ]]; then
    continue
  fi
  echo "== ${name} (${pkg}) for ${fuzztime}, ${parallel} worker(s)"
  status=0
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "${fuzztime}" -parallel "${parallel}" "${pkg}" \
    >"${logdir}/${name}.log" 2>&1 || status=$?
  tail -n 4 "${logdir}/${name}.log"
  # The corpus the fuzzer built: keep it as seeds.
  src="${cache}/${module}/${pkg#./}"
  src="${src%/}/${name}"
  dst="${pkg%/}/testdata/fuzz/${name}"
  if [ -d "${src}" ]; then
    mkdir -p "${dst}"
    cp -n "${src}"/* "${dst}/" 2>/dev/null || true
    echo "   corpus: $(ls "${dst}" | wc -l) files in ${dst}"
  fi
  if [ "${status}" -ne 0 ]; then
    echo "   ${name} FAILED (exit ${status}); the crasher is in ${dst}; log: ${logdir}/${name}.log"
    exit "${status}"
  fi
done
echo "logs: ${logdir}"

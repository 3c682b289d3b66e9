#!/usr/bin/env bash
# run-tests.sh: runs shardrun's test suites and prints one closing line,
#   "tests: N passed, N failed"
# usage: run-tests.sh unit BIN... | sim | spec | integration | all BIN...
# SHARDRUN names the binary under test (the integration tests drive it);
# SIM the deterministic simulation (tests/sim; SIM_SEEDS, SIM_SEED pass
# through); TEST_LOG_DIR the folder of the logs (the Makefile: $(BUILD)/test-logs).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export AWS_EC2_METADATA_DISABLED=true
export SHARDRUN_TESTDATA="${SHARDRUN_TESTDATA:-$ROOT/../shared/testdata}"
mode="${1:-all}"
shift || true

passed=0
failed=0
status=0
LOGDIR="${TEST_LOG_DIR:-$ROOT/build/test-logs}"
mkdir -p "$LOGDIR"

count() { # $1 passed $2 failed
    passed=$((passed + $1))
    failed=$((failed + $2))
}

run_unit() {
    local bin name out p f
    for bin in "$@"; do
        name=$(basename "$bin")
        out="$LOGDIR/$name.log"
        if "$bin" >"$out" 2>&1; then :; else status=1; fi
        p=$(grep -Eo '\[  PASSED  \] [0-9]+' "$out" | awk '{s+=$4} END {print s+0}')
        f=$(grep -Eo '\[  FAILED  \] [0-9]+' "$out" | awk '{s+=$4} END {print s+0}')
        if [[ $p -eq 0 && $f -eq 0 ]]; then f=1; status=1; fi # crashed before reporting
        count "$p" "$f"
        printf 'unit %-28s %3d passed %3d failed\n' "$name" "$p" "$f"
        if [[ $f -gt 0 ]]; then grep -E 'FAILED|ERROR|Failure|assert' "$out" | head -20; fi
    done
}

# The processor's unit tests run once more under valgrind (memory errors in
# the Lua host: records kept past their batch, states closed under a job).
# Not for sanitizer builds: valgrind and ASan do not mix.
VALGRIND_UNITS="test_processor"
run_valgrind() {
    local bin name out
    command -v valgrind >/dev/null || { echo "unit valgrind: valgrind is not installed (make deps)"; count 0 1; status=1; return; }
    for bin in "$@"; do
        name=$(basename "$bin")
        [[ " $VALGRIND_UNITS " == *" $name "* && "$bin" != *build-asan* ]] || continue
        out="$LOGDIR/$name.valgrind.log"
        if SHARDRUN_LUA_DIR="$ROOT/lua" valgrind -q --error-exitcode=99 "$bin" >"$out" 2>&1; then
            count 1 0
            printf 'unit %-28s %3d passed %3d failed\n' "valgrind:$name" 1 0
        else
            count 0 1
            status=1
            printf 'unit %-28s %3d passed %3d failed\n' "valgrind:$name" 0 1
            grep -E '==[0-9]+==|FAILED' "$out" | head -20
        fi
    done
}

# The include rules of runtime/ (make lint runs it too): a layer that points
# up, or an include cycle, fails the suite.
run_layers() {
    local out="$LOGDIR/layers.log"
    if /usr/bin/python3 scripts/check-layers.py >"$out" 2>&1; then
        count 1 0
        printf 'lint %-28s %3d passed %3d failed\n' "check-layers" 1 0
    else
        count 0 1
        status=1
        printf 'lint %-28s %3d passed %3d failed\n' "check-layers" 0 1
        cat "$out"
    fi
}

# The deterministic simulation: its regression seeds, then SIM_SEEDS seeds
# (default 2000). One line per failing seed says how to replay it.
run_sim() {
    local out="$LOGDIR/sim.log" bin="${SIM:-$ROOT/build/tests/sim}"
    if [[ ! -x "$bin" ]]; then echo "sim: $bin not built (make $bin)"; count 0 1; status=1; return; fi
    if "$bin" >"$out" 2>&1; then :; else status=1; fi
    local p f
    p=$(grep -Eo 'passed=[0-9]+' "$out" | tail -1 | cut -d= -f2)
    f=$(grep -Eo 'failed=[0-9]+' "$out" | tail -1 | cut -d= -f2)
    p=${p:-0}; f=${f:-0}
    if [[ $p -eq 0 && $f -eq 0 ]]; then f=1; status=1; fi # crashed before reporting
    count "$p" "$f"
    printf 'sim  %-28s %3d passed %3d failed  (seeds)\n' "deterministic-simulation" "$p" "$f"
    grep -E '^sim: (seeds|injected)' "$out" | sed 's/^/     /'
    if [[ $f -gt 0 ]]; then grep -E 'FAIL|replay' "$out" | head -20; fi
}

run_spec() {
    local out="$LOGDIR/spec.log"
    if scripts/run-spec.sh >"$out" 2>&1; then :; else status=1; fi
    local p f e
    p=$(grep -Eo '[0-9]+ success' "$out" | tail -1 | awk '{print $1+0}')
    f=$(grep -Eo '[0-9]+ failure' "$out" | tail -1 | awk '{print $1+0}')
    e=$(grep -Eo '[0-9]+ error' "$out" | tail -1 | awk '{print $1+0}')
    p=${p:-0}; f=$((${f:-0} + ${e:-0}))
    if [[ $p -eq 0 && $f -eq 0 ]]; then f=1; status=1; cat "$out"; fi
    count "$p" "$f"
    printf 'spec %-28s %3d passed %3d failed\n' "busted" "$p" "$f"
    if [[ $f -gt 0 ]]; then tail -40 "$out"; fi
}

run_integration() {
    local out="$LOGDIR/integration.log"
    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration "$@" 2>&1 | tee "$out" | grep -E '^(FAILED|ERROR)|passed|failed' || true
    local rc=${PIPESTATUS[0]}
    [[ $rc -eq 0 ]] || status=1
    local p f e
    p=$(tail -1 "$out" | grep -Eo '[0-9]+ passed' | awk '{print $1+0}')
    f=$(tail -1 "$out" | grep -Eo '[0-9]+ failed' | awk '{print $1+0}')
    e=$(tail -1 "$out" | grep -Eo '[0-9]+ error' | awk '{print $1+0}')
    p=${p:-0}; f=$((${f:-0} + ${e:-0}))
    if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; fi
    count "$p" "$f"
    printf 'integration %-21s %3d passed %3d failed\n' "pytest" "$p" "$f"
}

case "$mode" in
unit)
    run_unit "$@"
    run_valgrind "$@"
    ;;
sim) run_sim ;;
spec) run_spec ;;
integration) run_integration ;;
all)
    run_layers
    run_unit "$@"
    run_valgrind "$@"
    run_sim
    run_spec
    run_integration
    ;;
*) echo "usage: $0 unit BIN... | sim | spec | integration | all BIN..." >&2; exit 2 ;;
esac

echo "tests: $passed passed, $failed failed"
[[ $status -eq 0 && $failed -eq 0 ]]

#!/usr/bin/env bash
# emulators.sh: kinesalite (Kinesis) and dynalite (DynamoDB) on 127.0.0.1, the
# local stand-ins for AWS used by the integration tests and the benchmarks.
#
#   scripts/emulators.sh install   npm packages into .deps/node (no-op when present)
#   scripts/emulators.sh start     start both (idempotent), wait until they answer
#   scripts/emulators.sh stop      stop both, by the PIDs `start` saved
#   scripts/emulators.sh status    say what runs where; exit 1 if either is down
#
# The work is done by scripts/emulators.py, the same module the tests and
# benchmarks use as their fixture (ports, versions, kinesalite's quirks: see there).
set -euo pipefail
exec /usr/bin/env python3 "$(dirname "${BASH_SOURCE[0]}")/emulators.py" "$@"

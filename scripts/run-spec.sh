#!/usr/bin/env bash
# run-spec.sh: runs the busted specs (tests/spec/*_spec.lua) under LuaJIT,
# from the repository root, with lua/ on package.path (so `require
# "shardrun.testing"` resolves to lua/shardrun/testing.lua). Prints busted's
# summary ("N successes / N failures / N errors / N pending"); exits non-zero
# when a spec fails. Extra arguments go to busted, e.g.
#   scripts/run-spec.sh --filter=wordcount
#   scripts/run-spec.sh tests/spec/json_spec.lua
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export AWS_EC2_METADATA_DISABLED=true

command -v busted >/dev/null || { echo "run-spec: busted not found (make deps installs lua-busted)" >&2; exit 1; }
command -v luajit >/dev/null || { echo "run-spec: luajit not found (make deps installs luajit)" >&2; exit 1; }

args=("$@")
paths=0
for a in "$@"; do [[ -e "$a" ]] && paths=1; done
((paths)) || args+=(tests/spec)
# --lua=luajit: Debian's busted starts under lua5.x and re-runs itself with
# the interpreter given here, through the shell, unquoted; so lua/ goes on the
# path through LUA_PATH (";;" = LuaJIT's default path after it), not --lpath.
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
exec busted --lua=luajit "${args[@]}"

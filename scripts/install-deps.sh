#!/usr/bin/env bash
# install-deps.sh: everything shardrun needs to build, test and run its demo on
# Debian 12, from Debian's packages (and kinesalite/dynalite/kinesis-mock from
# npm for the AWS tests). A no-op when everything is there already. Uses sudo
# only when not root.
#
# Then it builds LuaJIT with LUAJIT_ENABLE_CHECKHOOK into .deps/luajit (see
# scripts/build-luajit.sh: Debian's build cannot interrupt compiled loops,
# which process_timeout_ms needs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

PACKAGES=(
    build-essential pkg-config clang
    libluajit-5.1-dev luajit lua-cjson lua-busted
    libev-dev libcurl4-openssl-dev libssl-dev libsqlite3-dev sqlite3 libcjson-dev zlib1g-dev
    libcmocka-dev libsystemd-dev libmicrohttpd-dev
    python3 python3-pytest valgrind systemd man-db
    prometheus  # the metrics tests scrape a worker with the real server; promtool checks the exposition
    dpkg-dev ca-certificates curl
)

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install-deps: not root and no sudo: install ${PACKAGES[*]}" >&2; exit 1; }
    SUDO="sudo"
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm for the AWS emulators: the machine's own Node is fine.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    missing+=(nodejs npm)
fi

if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

"$ROOT/scripts/build-luajit.sh" | grep -v '^build-luajit: already built' || true
if [[ ! -f "$ROOT/.deps/luajit/lib/libluajit-5.1.a" ]]; then
    echo "install-deps: LuaJIT build failed (see above)" >&2
    exit 1
fi
# Enhanced fan-out (SubscribeToShard) needs HTTP/2: Debian 12's libcurl4 is
# built with nghttp2 (libnghttp2-14 comes with it), other builds may not be.
if ! curl-config --features 2>/dev/null | grep -qx HTTP2; then
    echo "install-deps: warning: this libcurl has no HTTP/2 (curl-config --features); enhanced fan-out needs it" >&2
fi
"$ROOT/scripts/emulators.sh" install >/dev/null

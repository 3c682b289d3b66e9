#!/usr/bin/env bash
# build-luajit.sh: builds Debian's own LuaJIT source package with
# LUAJIT_ENABLE_CHECKHOOK into .deps/luajit (static library, headers, binary).
#
# Why: Debian's libluajit ignores count hooks inside JIT-compiled loops, so a
# processor stuck in `while true do end` could never be interrupted by the
# process_timeout_ms hook. With CHECKHOOK, compiled code checks the hook too.
#
# The source comes from `apt-get source` against a PRIVATE sources list, lists
# dir and cache dir under .deps/luajit-build/apt: the machine's apt
# configuration and state are never touched. The private list mirrors the
# deb822 stanzas in /etc/apt/sources.list.d/debian.sources (same URIs, suites,
# components and keyring), with Types: deb-src.
#
# Result (what the Makefile looks for):
#   .deps/luajit/include/luajit-2.1/*.h
#   .deps/luajit/lib/libluajit-5.1.a
#   .deps/luajit/bin/luajit
#   .deps/luajit/.shardrun-build   stamp: build flags + Debian source version
#
# Idempotent: a no-op when the library exists and the stamp says CHECKHOOK.
# FORCE=1 rebuilds. Runs as root; uses sudo only for apt-get install otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.deps/luajit"
WORK="$ROOT/.deps/luajit-build"
APTDIR="$WORK/apt"
STAMP="$PREFIX/.shardrun-build"
CHECKHOOK_FLAG="-DLUAJIT_ENABLE_CHECKHOOK"

die() { echo "build-luajit: error: $*" >&2; exit 1; }
say() { echo "build-luajit: $*"; }

if [[ "${FORCE:-0}" != 1 && -f "$PREFIX/lib/libluajit-5.1.a" && -f "$STAMP" ]] &&
   grep -q -- "xcflags=.*$CHECKHOOK_FLAG" "$STAMP" && grep -q "itern_fix=1" "$STAMP"; then
    say "already built with LUAJIT_ENABLE_CHECKHOOK ($(grep '^source=' "$STAMP" | cut -d= -f2-)); FORCE=1 rebuilds"
    exit 0
fi

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot install build tools"
    SUDO="sudo"
fi

# Build tools. dpkg-source (dpkg-dev) unpacks and applies Debian's patches.
need=()
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
command -v make >/dev/null || need+=(make)
command -v gcc >/dev/null || need+=(gcc)
if ((${#need[@]})); then
    say "installing build tools: ${need[*]}"
    $SUDO apt-get install -y --no-install-recommends "${need[@]}" ||
        die "apt-get install ${need[*]} failed"
fi

# --- private apt configuration -------------------------------------------
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/etc"
SRCLIST="$APTDIR/etc/sources.list"

# Turns deb822 stanzas ("Types: deb" ... blank line) into one-line deb-src
# entries, one per suite, keeping the keyring so signatures are still checked.
deb822_to_debsrc() {
    awk '
        function flush() {
            if (uris != "" && suites != "" && types ~ /deb/) {
                n = split(suites, s, /[ \t]+/)
                m = split(uris, u, /[ \t]+/)
                for (j = 1; j <= m; j++) for (i = 1; i <= n; i++) {
                    if (s[i] == "" || u[j] == "") continue
                    opt = (signed != "") ? "[signed-by=" signed "] " : ""
                    print "deb-src " opt u[j] " " s[i] " " comps
                }
            }
            types = uris = suites = comps = signed = ""
        }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        {
            key = $1; sub(/:$/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
            if (key == "Types") types = val
            else if (key == "URIs") uris = val
            else if (key == "Suites") suites = val
            else if (key == "Components") comps = val
            else if (key == "Signed-By") signed = val
        }
        END { flush() }
    ' "$@"
}

: >"$SRCLIST"
for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && deb822_to_debsrc "$f" >>"$SRCLIST"
done
# Old one-line format, if the machine has it.
if [[ -f /etc/apt/sources.list ]]; then
    sed -n 's/^[[:space:]]*deb[[:space:]]\+/deb-src /p' /etc/apt/sources.list >>"$SRCLIST"
fi
if [[ ! -s "$SRCLIST" ]]; then
    say "no apt sources found on this machine; using deb.debian.org bookworm"
    echo "deb-src http://deb.debian.org/debian bookworm main" >"$SRCLIST"
fi
sort -u -o "$SRCLIST" "$SRCLIST"
say "private sources list $SRCLIST:"
sed 's/^/    /' "$SRCLIST"

APT_OPTS=(
    -o "Dir::Etc::SourceList=$SRCLIST"
    -o "Dir::Etc::SourceParts=/nonexistent"
    -o "Dir::State::Lists=$APTDIR/lists"
    -o "Dir::Cache=$APTDIR/cache"
)
# As root apt drops to the _apt user to download; our private dirs are not
# theirs, so download as the current user instead (a command-line option
# only: the machine's configuration is untouched).
[[ "$(id -u)" == 0 ]] && APT_OPTS+=(-o "APT::Sandbox::User=root")

say "apt-get update (private lists)"
apt-get "${APT_OPTS[@]}" update || die "apt-get update with the private sources list failed"

# Prefer the exact version of the installed library, so the headers match the
# system's; fall back to the newest source when that version is gone.
want=""
if ver="$(dpkg-query -W -f='${source:Version}' libluajit-5.1-2 2>/dev/null)" && [[ -n "$ver" ]]; then
    want="luajit=$ver"
fi

SRC="$WORK/src"
rm -rf "$SRC"
mkdir -p "$SRC"
cd "$SRC"
say "apt-get source ${want:-luajit}"
if ! { [[ -n "$want" ]] && apt-get "${APT_OPTS[@]}" source "$want"; }; then
    [[ -n "$want" ]] && say "version $want not available; trying the newest luajit source"
    apt-get "${APT_OPTS[@]}" source luajit || die "apt-get source luajit failed"
fi

DSC="$(find "$SRC" -maxdepth 1 -name 'luajit_*.dsc' | head -n1)"
[[ -n "$DSC" ]] || die "no luajit_*.dsc downloaded"
TREE="$(find "$SRC" -mindepth 1 -maxdepth 1 -type d -name 'luajit-*' | head -n1)"
[[ -n "$TREE" && -f "$TREE/src/luajit.c" ]] || die "unpacked source tree not found in $SRC"
[[ -f "$TREE/debian/patches/series" ]] && say "Debian patches applied: $(grep -cv '^\s*#' "$TREE/debian/patches/series") (see $TREE/debian/patches/series)"
SRCVER="$(basename "$DSC" .dsc | sed 's/^luajit_//')"

# --- the project's one fix to LuaJIT ----------------------------------------
# With LUAJIT_ENABLE_CHECKHOOK the recorder emits three IR instructions (the
# hook check) at the start of every trace. rec_itern() detects its own loop
# by asking whether anything was recorded since the trace started
# (nins > REF_FIRST+1); the hook check makes that true at once, so a trace
# that starts at a pairs()/next() loop (BC_ITERN) closes before recording
# the iteration and spins forever. The fix moves rec_itern's baseline past
# the hook check. tests/unit/test_luajit_hook.c has the regression test.
ITERN_FIX="shardrun-itern-checkhook"
REC="$TREE/src/lj_record.c"
if ! grep -q "$ITERN_FIX" "$REC"; then
    grep -q 'J->cur.nins > REF_FIRST+1 ||' "$REC" || die "lj_record.c: rec_itern's loop check not found; review the fix"
    sed -i \
        -e "s|(J->cur.nins > REF_FIRST+1 \|\||(J->cur.nins > REC_ITERN_BASE+1 \|\||" \
        -e "s|(J->cur.nins == REF_FIRST+1 \&\& J->cur.ir\[REF_FIRST\].o != IR_PROF)|(J->cur.nins == REC_ITERN_BASE+1 \&\& J->cur.ir[REC_ITERN_BASE].o != IR_PROF)|" \
        -e "s|^static LoopEvent rec_itern(jit_State \*J, BCReg ra, BCReg rb)$|/* $ITERN_FIX: the hook check emits 3 instructions first */\n#ifdef LUAJIT_ENABLE_CHECKHOOK\n#define REC_ITERN_BASE (REF_FIRST+3)\n#else\n#define REC_ITERN_BASE REF_FIRST\n#endif\n&|" \
        "$REC"
    grep -q "REC_ITERN_BASE+1 ||" "$REC" && grep -q "define REC_ITERN_BASE" "$REC" ||
        die "could not apply the rec_itern fix to $REC"
    say "applied $ITERN_FIX to lj_record.c"
fi

# --- build ----------------------------------------------------------------
# PREFIX=/usr and Debian's multiarch MULTILIB are compiled into package.path
# and package.cpath, so a program linked with this library finds the same Lua
# modules as the system luajit (e.g. lua-cjson's cjson.so). Nothing is
# installed under /usr: `make install` goes to a staging DESTDIR, and the
# files the project needs are copied to .deps/luajit.
MA="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)"
[[ -n "$MA" ]] || die "cannot determine the multiarch triplet"
MAKEVARS=(PREFIX=/usr "MULTILIB=lib/$MA" BUILDMODE=static "XCFLAGS=$CHECKHOOK_FLAG" Q=)
say "make ${MAKEVARS[*]}"
make -C "$TREE" clean >/dev/null
make -C "$TREE" -j"$(nproc)" "${MAKEVARS[@]}" amalg >"$WORK/build.log" 2>&1 ||
    { tail -n 40 "$WORK/build.log" >&2; die "LuaJIT build failed (full log: $WORK/build.log)"; }
grep -q -- "$CHECKHOOK_FLAG" "$WORK/build.log" ||
    die "the build log does not show $CHECKHOOK_FLAG being passed (log: $WORK/build.log)"

STAGE="$WORK/stage"
rm -rf "$STAGE"
make -C "$TREE" "${MAKEVARS[@]}" DESTDIR="$STAGE" install >>"$WORK/build.log" 2>&1 ||
    { tail -n 20 "$WORK/build.log" >&2; die "LuaJIT staging install failed (log: $WORK/build.log)"; }

SLIB="$STAGE/usr/lib/$MA/libluajit-5.1.a"
SINC="$(find "$STAGE/usr/include" -mindepth 1 -maxdepth 1 -type d -name 'luajit-2.1*' | head -n1)"
SBIN="$(find "$STAGE/usr/bin" -maxdepth 1 -type f -name 'luajit*' | head -n1)"
[[ -f "$SLIB" ]] || die "staging install has no $SLIB"
[[ -n "$SINC" && -f "$SINC/lua.h" ]] || die "staging install has no luajit-2.1 headers"
[[ -n "$SBIN" ]] || die "staging install has no luajit binary"

rm -rf "$PREFIX"
mkdir -p "$PREFIX/lib" "$PREFIX/include/luajit-2.1" "$PREFIX/bin" "$PREFIX/share"
cp "$SLIB" "$PREFIX/lib/libluajit-5.1.a"
cp "$SINC"/*.h "$SINC"/*.hpp "$PREFIX/include/luajit-2.1/" 2>/dev/null || cp "$SINC"/*.h "$PREFIX/include/luajit-2.1/"
cp "$SBIN" "$PREFIX/bin/luajit"
# jit.* modules (for -jv, -b); the binary itself looks under /usr/share, which
# the system's libluajit-5.1-common provides; this copy is for reference.
[[ -d "$STAGE/usr/share" ]] && cp -r "$STAGE/usr/share/." "$PREFIX/share/"

"$PREFIX/bin/luajit" -e 'local x = 0 for i = 1, 100 do x = x + i end assert(x == 5050)' ||
    die "the built luajit does not run"

{
    echo "source=$SRCVER"
    echo "xcflags=$CHECKHOOK_FLAG"
    echo "buildmode=static"
    echo "itern_fix=1"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$STAMP"
say "installed LuaJIT $SRCVER with LUAJIT_ENABLE_CHECKHOOK into $PREFIX"

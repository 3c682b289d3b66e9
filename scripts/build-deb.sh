#!/usr/bin/env bash
# build-deb.sh: makes the Debian package from a `make install PREFIX=/usr`
# tree, with Debian's own tools: dpkg-shlibdeps for the library dependencies,
# dpkg-deb to build. Called by `make deb`:
#   build-deb.sh WORKDIR VERSION OUTDIR
# WORKDIR holds the installed tree in WORKDIR/debian/shardrun (the layout
# dpkg-shlibdeps expects); the package is written to
# OUTDIR/shardrun_<VERSION>_<arch>.deb and its path printed. DEB_MAINTAINER
# sets the Maintainer field ("Name <mail>").
set -euo pipefail

WORK="$1" VERSION="$2" OUT="$3"
ROOT="$WORK/debian/shardrun"
[[ -x "$ROOT/usr/bin/shardrun" ]] || { echo "build-deb: $ROOT/usr/bin/shardrun missing (make install PREFIX=/usr DESTDIR=$ROOT)" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps dpkg-architecture; do
    command -v "$tool" >/dev/null || { echo "build-deb: $tool not found (Debian: apt install dpkg-dev)" >&2; exit 1; }
done
ARCH="$(dpkg-architecture -qDEB_HOST_ARCH)"

# Debian's layout: man pages compressed, the binary stripped of debug
# symbols (dynamic symbols stay: Lua C modules such as cjson link to them).
gzip -9n "$ROOT/usr/share/man/man1/shardrun.1"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$ROOT/usr/bin/shardrun"
install -d "$ROOT/usr/share/doc/shardrun"
cat >"$ROOT/usr/share/doc/shardrun/README.Debian" <<'TXT'
shardrun for Debian
-------------------
The command: shardrun(1). A project: `shardrun init DIR`. Its processor's
specs: `shardrun test` (needs luajit and lua-busted). The Lua modules are in
/usr/share/shardrun/lua, the examples in /usr/share/shardrun/examples.

The systemd unit shardrun@.service runs the project /etc/shardrun/NAME:
    shardrun init /etc/shardrun/orders --kinesis    (then edit it)
    systemctl enable --now shardrun@orders
TXT

# Library dependencies, as dpkg-shlibdeps finds them (it reads debian/control).
install -d "$WORK/debian"
printf 'Source: shardrun\n\nPackage: shardrun\nArchitecture: any\n' >"$WORK/debian/control"
shlibs="$(cd "$WORK" && dpkg-shlibdeps -O -e debian/shardrun/usr/bin/shardrun 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
[[ -n "$shlibs" ]] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

install -d "$ROOT/DEBIAN"
size="$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)"
cat >"$ROOT/DEBIAN/control" <<CTL
Package: shardrun
Version: $VERSION
Architecture: $ARCH
Maintainer: ${DEB_MAINTAINER:-shardrun developers <shardrun@localhost>}
Installed-Size: $size
Depends: $shlibs, lua-cjson
Recommends: luajit, lua-busted
Section: net
Priority: optional
Description: runs Lua record processors over Kinesis or a local stream
 shardrun consumes sharded streams (Amazon Kinesis Data Streams, or a local
 stream in a SQLite file) and runs record processors written in Lua (LuaJIT),
 one Lua state per shard. It owns leasing (a KCL-compatible DynamoDB table,
 or a local SQLite file), fetching, throttling and checkpointing, with error
 policies, hot reload and a systemd unit (shardrun@.service).
CTL

# The unit is a template (shardrun@NAME), enabled by the admin: systemd only
# needs to learn that it is there, or gone.
for script in postinst postrm; do
    cat >"$ROOT/DEBIAN/$script" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl --system daemon-reload >/dev/null 2>&1 || true
fi
exit 0
SH
    chmod 0755 "$ROOT/DEBIAN/$script"
done
(cd "$ROOT" && find . -type f -not -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$ROOT/DEBIAN/md5sums"

deb="$OUT/shardrun_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$deb" >/dev/null
echo "$deb"

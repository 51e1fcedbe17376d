#!/usr/bin/env bash
# Install Triton's perf_analyzer (PyPI perf-analyzer 2.60.0) into .venv/perf_analyzer/ and write the wrapper
# .venv/bin/perf_analyzer. Idempotent: a second run only checks.
#
# The wheel is tagged manylinux_2_38 (glibc 2.38); Debian 12 has glibc 2.36, so pip installs it only with
# --platform/--target, and its binary runs through Debian 13 (trixie) libc6/libstdc++6/libgcc-s1 unpacked beside
# it (apt-get download + dpkg -x, with a private source list: the system's apt configuration is not touched) and
# started by that folder's ld-linux-x86-64.so.2 with --library-path. On a system with glibc >= 2.38 the binary
# runs as it is. Usage: scripts/install-perf-analyzer.sh [VENV]   (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
DIR="$VENV/perf_analyzer"
VERSION=2.60.0
WRAPPER="$VENV/bin/perf_analyzer"
stamp="$DIR/.installed-$VERSION"
[ -f "$stamp" ] && [ -x "$WRAPPER" ] && { echo "==> perf_analyzer $VERSION: installed"; exit 0; }

echo "==> perf_analyzer $VERSION into $DIR"
rm -rf "$DIR" && mkdir -p "$DIR" && DIR="$(cd "$DIR" && pwd)"
"$VENV/bin/pip" install -q --no-deps --platform manylinux_2_38_x86_64 --only-binary=:all: --target "$DIR/wheel" \
  "perf-analyzer==$VERSION"
BIN="$(cd "$DIR/wheel/perf_analyzer/bin" && pwd)/perf_analyzer"
chmod +x "$BIN"

glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
if [ "$(printf '%s\n2.38\n' "$glibc" | sort -V | head -1)" = "2.38" ]; then
  printf '#!/bin/sh\nexec "%s" "$@"\n' "$BIN" > "$WRAPPER"
else
  # glibc < 2.38: trixie's loader, libc, libstdc++ and libgcc, private to this folder.
  apt_dir="$DIR/apt"; mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$DIR/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    > "$apt_dir/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
            -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)")
  apt-get "${apt_opts[@]}" update -qq
  (cd "$DIR/debs" && apt-get "${apt_opts[@]}" download libc6 libstdc++6 libgcc-s1 >/dev/null)
  for deb in "$DIR"/debs/*.deb; do dpkg -x "$deb" "$DIR/root"; done
  rm -rf "$apt_dir" "$DIR/debs"
  root="$(cd "$DIR/root" && pwd)"
  libs="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu"
  printf '#!/bin/sh\nexec "%s" --library-path "%s" "%s" "$@"\n' \
    "$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$libs" "$BIN" > "$WRAPPER"
fi
chmod +x "$WRAPPER"
"$WRAPPER" --version >/dev/null 2>&1 || "$WRAPPER" --help >/dev/null 2>&1 || {
  echo "perf_analyzer does not start: $("$WRAPPER" --version 2>&1 | head -3)" >&2; exit 1; }
touch "$stamp"
echo "==> perf_analyzer $VERSION: $WRAPPER"

#!/bin/sh
# Installs (as root, with apt-get) the Debian packages the build, the specs,
# the demo and the benchmarks need. `--check` does the same but says nothing
# when all is there. Nothing else is ever installed by hand.
set -e
PKGS="make gcc pkg-config lua5.4 liblua5.4-dev luajit2 libluajit2-5.1-dev
libcurl4-openssl-dev libssl-dev lua-cjson lua-busted nginx libnginx-mod-http-lua
python3-oauthlib valgrind clang libfuzzer-14-dev libclang-rt-14-dev lua-check cppcheck
luarocks wrk curl procps openssl redis-server libhiredis-dev"

missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing="$missing $p"
  fi
done
if [ -z "$missing" ]; then
  [ "$1" = "--check" ] || echo "deps: everything is installed"
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "deps: missing Debian packages:$missing" >&2
  echo "deps: run 'make deps' as root (or: sudo apt-get install$missing)" >&2
  exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
# Debian's nginx package starts a server on port 80 at install; the specs
# start their own on free loopback ports and want nothing else around.
if [ -f /run/nginx.pid ]; then nginx -s quit 2>/dev/null || true; fi

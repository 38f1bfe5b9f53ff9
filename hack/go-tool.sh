#!/usr/bin/env bash
# go-tool.sh BIN NAME PACKAGE VERSION
# Installs a Go tool at a pinned version into a per-user cache keyed by version
# and links it into BIN. A second clone on the same machine reuses the binary.
set -euo pipefail
bin=$1 name=$2 pkg=$3 version=$4
cache=${RESPONSIBILITY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/responsibility-operator}/tools/$name-$version
if [ ! -x "$cache/$name" ]; then
  echo "installing $name $version" >&2
  mkdir -p "$cache"
  GOBIN=$cache GOFLAGS=-mod=mod go install "$pkg@$version"
fi
mkdir -p "$bin"
ln -sf "$cache/$name" "$bin/$name"

#!/usr/bin/env bash
# kyverno.sh BIN
# Builds Kyverno's background controller at the version pinned in
# hack/bench-peers/kyverno/go.mod (a module of its own, so that Kyverno's
# dependencies never enter the operator's go.mod) into a per-user cache keyed
# by version, and links it into BIN. Only `make bench-peers` needs it. The first
# build takes about 6 minutes on 2 cores (2.5 GB of Go build cache); later
# clones on the same machine reuse the binary.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
mod=$root/hack/bench-peers/kyverno
version=$(cd "$mod" && go list -m -f '{{.Version}}' github.com/kyverno/kyverno)
name=kyverno-background-controller
cache=${RESPONSIBILITY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/responsibility-operator}/tools/$name-$version
if [ ! -x "$cache/$name" ]; then
  echo "building $name $version into $cache (first time only, about 6 minutes)" >&2
  mkdir -p "$cache"
  # The flags of Kyverno's own Makefile (LD_FLAGS, build-background-controller).
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/kyverno/kyverno/pkg/version.BuildVersion=$version" \
    -o "$cache/$name.tmp" github.com/kyverno/kyverno/cmd/background-controller)
  mv "$cache/$name.tmp" "$cache/$name"
fi
mkdir -p "$bin"
ln -sf "$cache/$name" "$bin/$name"

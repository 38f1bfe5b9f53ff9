#!/usr/bin/env bash
# Builds kube-apiserver, etcd and kubectl from their Go modules (no downloads of
# prebuilt binaries: this works with only the Go module proxy reachable) and links
# them into bin/k8s. Built binaries are kept in a per-user cache keyed by version,
# so a fresh clone on the same machine starts its tests in seconds.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/bin/k8s}
cache=${RESPONSIBILITY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/responsibility-operator}/k8s/$K8S_VERSION
mod=$root/hack/tools/controlplane

minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"

build() { # name package
  if [ -x "$cache/$1" ]; then return; fi
  echo "building $1 $K8S_VERSION into $cache (first time only, several minutes)" >&2
  mkdir -p "$cache"
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$cache/$1.tmp" "$2")
  mv "$cache/$1.tmp" "$cache/$1"
}

build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kubectl k8s.io/kubernetes/cmd/kubectl

mkdir -p "$dest"
for b in etcd kube-apiserver kubectl; do
  ln -sf "$cache/$b" "$dest/$b"
done

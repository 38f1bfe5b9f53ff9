#!/usr/bin/env bash
# Regenerates every generated file and fails when any differs from what was
# there before, so stale deepcopy, CRDs or RBAC never land.
set -euo pipefail
cd "$(dirname "$0")/.."
generated=(api/v1alpha1/zz_generated.deepcopy.go config/crd/bases config/rbac/role.yaml config/webhook/manifests.yaml docs/catalog.md charts/responsibility-operator/crds charts/responsibility-operator/files/generated)
snapshot=$(mktemp -d)
trap 'rm -rf "$snapshot"' EXIT
for p in "${generated[@]}"; do
  if [ -e "$p" ]; then mkdir -p "$snapshot/$(dirname "$p")"; cp -r "$p" "$snapshot/$p"; fi
done
make --no-print-directory generate manifests docs >/dev/null
stale=0
for p in "${generated[@]}"; do
  if [ -e "$p" ] || [ -e "$snapshot/$p" ]; then
    if ! diff -r "$snapshot/$p" "$p" >/dev/null 2>&1; then
      echo "stale generated file: $p (regenerated now; review and commit it)" >&2
      stale=1
    fi
  fi
done
exit $stale

#!/usr/bin/env bash
# Installs Chromium for the HTML report's browser test (test/report), from the
# distribution's package: Debian's `chromium` (about 155 MB to download, 480 MB
# installed with its dependencies). Does nothing when a browser is there
# already: chromium on PATH, or $CHROMIUM (any Chromium or Chrome binary, the
# way to run the test on a machine without apt, e.g. macOS:
# CHROMIUM="/Applications/Google Chrome.app/Contents/MacOS/Google Chrome").
set -euo pipefail

if [ -n "${CHROMIUM:-}" ] && command -v "$CHROMIUM" >/dev/null; then exit 0; fi
if command -v chromium >/dev/null; then exit 0; fi

if ! command -v apt-get >/dev/null; then
  echo "no chromium on PATH and no apt-get: install Chromium with your package manager, or set CHROMIUM to a Chromium or Chrome binary" >&2
  exit 1
fi
sudo=
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
export DEBIAN_FRONTEND=noninteractive
# A fresh container has no package lists: update them when the install
# cannot find the package, then try once more.
$sudo apt-get install -y chromium ||
  { $sudo apt-get update && $sudo apt-get install -y chromium; }
command -v chromium

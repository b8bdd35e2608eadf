#!/usr/bin/env bash
# Install headless Chromium and ChromeDriver from Debian (packages chromium, chromium-driver) for the browser
# tests (pytest -m browser: the analysis report is opened in a real browser). Idempotent: does nothing when
# both binaries are already there. Needs root (or sudo) and apt-get; elsewhere it says so and exits 0, and the
# browser tests skip with that reason.
#   bash tools/install-chromium.sh
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "install-chromium: present: $(chromium --version 2>/dev/null || echo chromium), $(chromedriver --version 2>/dev/null | head -n1)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: no apt-get on this machine; install chromium and chromedriver yourself (browser tests will skip)" >&2
  exit 0
fi
SUDO=""
if [[ $(id -u) != 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install-chromium: not root and no passwordless sudo; skipping (browser tests will skip)" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when they are missing or older than a day (apt-get update is slow).
if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n1) ]]; then
  $SUDO apt-get update -qq
fi
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "install-chromium: installed: $(chromium --version 2>/dev/null), $(chromedriver --version 2>/dev/null | head -n1)"

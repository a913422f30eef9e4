#!/usr/bin/env bash
# Install Debian's chromium for tests/test_browser.py (Playwright's own browser download does not
# work here). Idempotent and quiet: does nothing when `chromium` is already on PATH.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install_browser.sh: chromium missing and not root (no sudo); install Debian package 'chromium'" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install_browser.sh: apt-get failed" >&2
    exit 1
fi

command -v chromium >/dev/null 2>&1 || { echo "install_browser.sh: chromium still not on PATH" >&2; exit 1; }

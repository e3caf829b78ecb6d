#!/usr/bin/env bash
# Debian's Chromium for the UI test in headless mode (tests/e2e/test_ui.py drives it with Playwright;
# no browser is downloaded). Needs root to install; does nothing when chromium is present.
set -euo pipefail
command -v chromium >/dev/null && exit 0
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
chromium --version

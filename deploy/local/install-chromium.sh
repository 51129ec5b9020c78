#!/usr/bin/env bash
# Installs Debian's chromium for the web page's browser tests (web/,
# driven by chromedp from go test). Run by `make test`; does nothing when
# chromium is already there. Needs root (CI runs make test as root);
# without it, it says what to run and the browser tests skip (they fail
# when CI is set).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
	exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
	echo "install-chromium: run 'sudo apt-get install -y chromium' for the browser tests of web/" >&2
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium

#!/usr/bin/env bash
# Installs Azurite, the Azure Storage emulator, into <repo>/.cache/npm so the
# Blob tests (internal/azurite, ingest/archive) can start it on loopback.
# Idempotent: does nothing when the pinned version is already there.
# Prints the path of the azurite-blob launcher on stdout.
#
#   $ deploy/local/install-azurite.sh
#   /path/to/repo/.cache/npm/node_modules/.bin/azurite-blob
#
# Environment:
#   AZURITE_VERSION  override the pinned version (default below)
set -euo pipefail

version="${AZURITE_VERSION:-3.37.0}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
prefix="${repo_root}/.cache/npm"
bin="${prefix}/node_modules/.bin/azurite-blob"
pkg_json="${prefix}/node_modules/azurite/package.json"

if ! command -v npm >/dev/null 2>&1; then
	echo "install-azurite: npm not found; install Node.js (>= 18) and npm first" >&2
	exit 1
fi

installed=""
if [[ -f "${pkg_json}" ]]; then
	installed="$(node -p "require(process.argv[1]).version" "${pkg_json}" 2>/dev/null || true)"
fi

if [[ "${installed}" != "${version}" || ! -x "${bin}" ]]; then
	mkdir -p "${prefix}"
	echo "install-azurite: installing azurite@${version} into ${prefix}" >&2
	npm install --prefix "${prefix}" --no-audit --no-fund --loglevel=error \
		"azurite@${version}" >&2
fi

if [[ ! -x "${bin}" ]]; then
	echo "install-azurite: ${bin} missing after install" >&2
	exit 1
fi
echo "${bin}"

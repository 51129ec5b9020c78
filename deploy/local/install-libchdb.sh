#!/usr/bin/env bash
# Installs libchdb.so, the embedded ClickHouse engine (chDB) that Custody's
# default store runs on. Idempotent: does nothing when the pinned version is
# already installed. Prints the library path on stdout.
#
#   $ deploy/local/install-libchdb.sh
#   /usr/local/lib/libchdb.so
#
# Where it goes: /usr/local/lib when writable (root), otherwise
# ${XDG_CACHE_HOME:-~/.cache}/custody/libchdb/, which custody also searches.
# Override with CHDB_INSTALL_DIR. custody finds it there, or wherever
# CHDB_LIB_PATH points.
#
# Source: the npm package @chdb/lib-linux-x64-gnu (chDB's own build of
# libchdb for linux x86-64). The tarball is checked against the integrity
# hash pinned below before anything is installed. On platforms that package
# does not cover, it falls back to chDB's official installer.
set -euo pipefail

version="26.7.3-stable.1"
package="@chdb/lib-linux-x64-gnu"
# npm's sha512 integrity of ${package}@${version}
integrity="sha512-XP97mMqnc5tZpKQywR8N7cLTsHNiTmHr30pC5mzo3jWmukjKn2IBa60c2B/gWUNcuFjOMjWoorQICCqBVj5wpw=="

if [[ -n "${CHDB_INSTALL_DIR:-}" ]]; then
	dest="${CHDB_INSTALL_DIR}"
elif [[ -w /usr/local/lib ]]; then
	dest=/usr/local/lib
else
	dest="${XDG_CACHE_HOME:-${HOME}/.cache}/custody/libchdb"
fi
lib="${dest}/libchdb.so"
stamp="${dest}/libchdb.so.version"

if [[ -f "${lib}" && -f "${stamp}" && "$(cat "${stamp}")" == "${package}@${version}" ]]; then
	echo "${lib}"
	exit 0
fi

os="$(uname -s)"
arch="$(uname -m)"
if [[ "${os}" != "Linux" || "${arch}" != "x86_64" ]]; then
	echo "install-libchdb: no npm build for ${os}/${arch}; using chDB's official installer" >&2
	curl -sSL https://lib.chdb.io | bash >&2
	for candidate in /usr/local/lib/libchdb.so /usr/local/lib/libchdb.dylib /opt/homebrew/lib/libchdb.dylib; do
		if [[ -f "${candidate}" ]]; then
			echo "chdb-official-installer" > "${candidate}.version"
			echo "${candidate}"
			exit 0
		fi
	done
	echo "install-libchdb: chDB's installer did not leave a library in /usr/local/lib; set CHDB_LIB_PATH" >&2
	exit 1
fi

for tool in npm openssl; do
	if ! command -v "${tool}" >/dev/null 2>&1; then
		echo "install-libchdb: ${tool} not found; install it first (npm fetches the library, openssl checks its integrity)" >&2
		exit 1
	fi
done

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
echo "install-libchdb: fetching ${package}@${version} (about 180 MB)" >&2
(cd "${work}" && npm pack --silent "${package}@${version}" >/dev/null)
tgz="$(ls "${work}"/*.tgz)"

want="${integrity#sha512-}"
got="$(openssl dgst -sha512 -binary "${tgz}" | base64 -w0)"
if [[ "${got}" != "${want}" ]]; then
	echo "install-libchdb: integrity mismatch for ${package}@${version}: got sha512-${got}" >&2
	exit 1
fi

tar -xzf "${tgz}" -C "${work}" package/libchdb.so
mkdir -p "${dest}"
install -m 0755 "${work}/package/libchdb.so" "${lib}.tmp"
mv "${lib}.tmp" "${lib}"
echo "${package}@${version}" > "${stamp}"
echo "install-libchdb: installed ${lib}" >&2
echo "${lib}"

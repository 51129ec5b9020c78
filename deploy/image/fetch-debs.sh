#!/usr/bin/env bash
# Fetches the Debian packages pinned in debs.lock with apt-get download,
# checks each against its pinned sha256, and unpacks each with dpkg-deb -x
# into its own directory (with its control file as
# var/lib/dpkg/status.d/<package>, where image scanners look for the
# packages of a distroless image). Idempotent; prints the directory holding
# one unpacked tree per package on stdout.
#
#   $ deploy/image/fetch-debs.sh
#   /work/custody/.cache/image/debs
#
# IMAGE_DEBS_DIR overrides the directory. When Debian has superseded a pinned
# version (point releases and security updates replace them in the archive),
# apt-get cannot fetch it any more: update debs.lock to the candidate
# version (apt-cache policy <package>) and its sha256 (sha256sum of the .deb).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
out="${IMAGE_DEBS_DIR:-${repo}/.cache/image/debs}"
lock="${here}/debs.lock"

for tool in apt-get dpkg-deb sha256sum; do
	if ! command -v "${tool}" >/dev/null 2>&1; then
		echo "fetch-debs: ${tool} not found: the image's runtime layer is built from Debian packages (run on Debian or Ubuntu)" >&2
		exit 1
	fi
done

mkdir -p "${out}/deb"
while read -r pkg version arch sum; do
	[[ -z "${pkg}" || "${pkg}" == \#* ]] && continue
	deb="${out}/deb/${pkg}_${version//:/%3a}_${arch}.deb"
	tree="${out}/${pkg}"
	stamp="${tree}.unpacked"
	if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${sum}" ]]; then
		continue
	fi
	if [[ ! -f "${deb}" ]] || ! echo "${sum}  ${deb}" | sha256sum -c --status; then
		rm -f "${deb}"
		# apt-get download writes into the working directory; _apt cannot
		# write there when it belongs to root, which apt reports and survives.
		if ! (cd "${out}/deb" && apt-get download -q "${pkg}=${version}" >&2 2> >(grep -v 'unsandboxed' >&2)); then
			echo "fetch-debs: apt-get download ${pkg}=${version} failed: run apt-get update, or update ${lock} when Debian has superseded the version" >&2
			exit 1
		fi
	fi
	if ! echo "${sum}  ${deb}" | sha256sum -c --status; then
		echo "fetch-debs: ${deb}: sha256 $(sha256sum "${deb}" | cut -d' ' -f1), pinned ${sum}" >&2
		exit 1
	fi
	rm -rf "${tree}" "${stamp}"
	mkdir -p "${tree}/var/lib/dpkg/status.d"
	dpkg-deb -x "${deb}" "${tree}"
	dpkg-deb -f "${deb}" > "${tree}/var/lib/dpkg/status.d/${pkg}"
	echo "${sum}" > "${stamp}"
done < "${lock}"
echo "${out}"

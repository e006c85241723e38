#!/usr/bin/env bash
# Builds the Debian packages (libmqrt0, libmqrt-dev, mqsec; debian/) with
# `dpkg-buildpackage -us -uc -b` in a clean copy of the source tree, then runs lintian on them.
# Installs what is missing (scripts/deps.sh, debhelper, lintian). The .deb files land in dist/
# (or $MQSEC_DIST_DIR). The packages are built with Debian's hardened flags and without
# -Werror (the package build is a user's build); scripts/build-matrix.sh gcc-hardened checks
# the same flags with -Werror.
#   scripts/package.sh
#   apt-get install ./dist/*.deb         # then: man mqsec, systemctl enable --now mqsec-agent
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dist=${MQSEC_DIST_DIR:-$root/dist}

"$root/scripts/deps.sh"
missing=()
for p in debhelper dpkg-dev fakeroot lintian scdoc; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "package: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# A clean copy of the tracked files as they are in the working tree (uncommitted changes
# included; no build directories). Untracked files are left out, so a stray key or PIN file in
# the checkout never lands in a package: `git add` a new source file first. One tar reads the
# whole list (xargs could split it into several archives, and the reader stops at the first).
work=$(mktemp -d "${TMPDIR:-/tmp}/mqsec-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
version=$(dpkg-parsechangelog -l "$root/debian/changelog" -S Version)
src=$work/mqsec-$version
mkdir -p "$src"
untracked=$(cd "$root" && git ls-files --others --exclude-standard | head -5)
[ -z "$untracked" ] ||
  echo "package: untracked files are not packaged (git add them first), e.g.: $untracked" >&2
(cd "$root" && git ls-files -z --cached |
  tar --null --no-recursion --ignore-failed-read -T - -cf -) | tar -C "$src" -xf -

start=$SECONDS
(cd "$src" && dpkg-buildpackage -us -uc -b -j"$(nproc)")
mkdir -p "$dist"
for f in "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes; do
  [ -e "$f" ] && cp "$f" "$dist/"
done
echo "package: built in $((SECONDS - start)) s:"
ls -1 "$dist"/*.deb
# Lintian: errors fail the script; warnings are shown.
lintian --fail-on error --info "$work"/*.changes
echo "package: lintian shows no errors"

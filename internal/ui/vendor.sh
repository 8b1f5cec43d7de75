#!/bin/sh
# vendor.sh fetches the dashboard's chart library, uPlot, from the npm
# registry into assets/vendor/ (committed; the daemon embeds it, so the
# page loads nothing from elsewhere at run time). Run it from any
# directory to update or to check the committed copy:
#
#	sh internal/ui/vendor.sh
#
# It needs npm and sha256sum. Bumping the version means changing VERSION
# and SHA256 together, after reading the new release's changes.
set -eu

VERSION=1.6.32
SHA256=4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d

here=$(cd "$(dirname "$0")" && pwd)
dest="$here/assets/vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && npm pack --silent "uplot@$VERSION" >/dev/null)
echo "$SHA256  $tmp/uplot-$VERSION.tgz" | sha256sum -c -
tar -xzf "$tmp/uplot-$VERSION.tgz" -C "$tmp"

mkdir -p "$dest"
cp "$tmp/package/dist/uPlot.iife.min.js" "$dest/uPlot.iife.min.js"
cp "$tmp/package/dist/uPlot.min.css" "$dest/uPlot.min.css"
cp "$tmp/package/LICENSE" "$dest/LICENSE"
echo "uPlot $VERSION (npm uplot@$VERSION, tarball sha256 $SHA256)" >"$dest/VERSION"

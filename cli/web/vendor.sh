#!/usr/bin/env bash
# Copy the JavaScript the pages use from node_modules (installed from npm by `make web-assets`)
# into static/vendor, with the licence of every package inside the bundle. Never a CDN: the
# pages must work with no network.
set -euo pipefail
cd "$(dirname "$0")"
out=static/vendor
mkdir -p "$out"
cp node_modules/d3/dist/d3.min.js "$out/d3.min.js"
{
  echo "Licences of the packages bundled in d3.min.js (npm package d3 and what it includes)."
  for pkg in node_modules/d3 node_modules/d3-* node_modules/internmap node_modules/delaunator \
    node_modules/robust-predicates; do
    name=$(node -p "require('./$pkg/package.json').name")
    version=$(node -p "require('./$pkg/package.json').version")
    licence=$(node -p "require('./$pkg/package.json').license")
    echo
    echo "==== $name $version ($licence)"
    cat "$pkg"/LICENSE*
  done
} > "$out/d3.LICENSES.txt"
echo "vendored d3 $(node -p "require('./node_modules/d3/package.json').version") into $out"

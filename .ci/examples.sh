#!/usr/bin/env bash
# The library as a host app meets it (README "Mount it in your own Express app"): the packed tarball,
# installed into each app under examples/ (ES module and CommonJS) with nothing of this checkout's
# node_modules, compiled with strict and skipLibCheck: false, and each app's test run.
set -euo pipefail
root="$(pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
npm run build >/dev/null
npm pack --silent --pack-destination "$work" >/dev/null
tarball="$(ls "$work"/*.tgz)"
for kind in esm cjs; do
  cp -r "$root/examples/$kind" "$work/$kind"
  (
    cd "$work/$kind"
    npm install --no-audit --no-fund --loglevel=error
    npm install --no-audit --no-fund --loglevel=error "$tarball"
    npm test --silent
  )
done

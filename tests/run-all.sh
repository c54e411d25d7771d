#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine, then run them.
# This is the README's test command and exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive for real: cron, HAProxy, and shellcheck for the scripts.
# Installed only when missing, and only when we can (root or sudo).
packages=(cron haproxy shellcheck)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The install tests drive the real cron daemon: start it if it is not running.
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
pgrep -x cron >/dev/null || "${sudo[@]}" cron

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -q "$@"

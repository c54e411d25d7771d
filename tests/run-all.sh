#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine, then run them.
# This is the README's test command and exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive for real: cron, HAProxy, shellcheck for the
# scripts, and the monitoring daemons check-status plugs into (Nagios, NRPE,
# Icinga 2, node_exporter, promtool). Installed only when missing, and only
# when we can (root or sudo).
packages=(cron haproxy shellcheck nagios4 nagios-nrpe-server nagios-nrpe-plugin
  monitoring-plugins-basic icinga2 prometheus-node-exporter prometheus)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
if [ "${#missing[@]}" -gt 0 ]; then
  # The packages' own services must not start: the tests start each daemon
  # themselves, with their own configuration, and stop it by PID. A
  # policy-rc.d that answers 101 is Debian's way of saying "start nothing".
  policy=/usr/sbin/policy-rc.d
  placed_policy=no
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    placed_policy=yes
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$placed_policy" = yes ]; then "${sudo[@]}" rm -f "$policy"; fi
fi
# Whatever a package started all the same (no policy-rc.d honoured) is stopped:
# a running Nagios or node_exporter would hold the ports and files the tests use.
for daemon in nagios4 nrpe icinga2 prometheus-node-exporter prometheus; do
  "${sudo[@]}" pkill -x "$daemon" 2>/dev/null || true
done

# The install tests drive the real cron daemon: start it if it is not running.
pgrep -x cron >/dev/null || "${sudo[@]}" cron

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -q "$@"

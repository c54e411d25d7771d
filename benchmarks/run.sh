#!/usr/bin/env bash
# Run the benchmark on this machine: a venv with a real (non-editable) install
# of this checkout, the Debian tools it compares against, then the table.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in wrk curl jq; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv=.bench-venv
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --upgrade .
"$venv/bin/python" benchmarks/bench.py --python "$PWD/$venv/bin/python" "$@"

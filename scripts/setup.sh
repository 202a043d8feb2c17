#!/usr/bin/env bash
# Set up exprgrad on a fresh Debian machine: Graphviz from Debian, a virtualenv in .venv with
# exprgrad (editable) and its test tools. Safe to run again; prints what it does.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dot >/dev/null 2>&1; then
    echo "setup: installing Graphviz (Debian package graphviz)"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi
echo "setup: installing exprgrad and its test tools into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

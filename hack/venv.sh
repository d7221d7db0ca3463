#!/usr/bin/env bash
# Create .venv and install the project with its dev extras (all of: operator, trainer, tests).
# Re-runs pip only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
# Pods run as non-root users (Pod Security "restricted"); on the local cluster they execute this
# venv's interpreter, so it must not live under a private home (pyenv's under /root is 0700).
# Debian's /usr/bin/python3.11 is readable by everyone: prefer it.
if [[ -z ${PYTHON:-} && -x /usr/bin/python3.11 ]] && /usr/bin/python3.11 -c "import venv, ensurepip" 2>/dev/null; then
  PYTHON=/usr/bin/python3.11
fi
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
under_root='import sys; sys.exit(0 if sys.base_prefix.startswith("/root") else 1)'
if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c "$under_root" && ! "$PY" -c "$under_root"; then
  echo "recreating $VENV: its interpreter lives under /root, which non-root pods cannot read" >&2
  rm -rf "$VENV"
fi
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
stamp=$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[dev]'
  rm -f "$VENV"/.installed-* && touch "$stamp"
fi

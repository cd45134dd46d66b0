#!/usr/bin/env bash
# Create .venv and install agad-stream with its test tools. Re-running is cheap:
# the install is skipped while pyproject.toml is unchanged since the last one.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
if [[ "$(cat "$VENV/.agad-installed" 2>/dev/null)" != "$stamp" ]]; then
  echo "setup: installing agad-stream and its dependencies into $VENV (torch is a ~2.7 GB download)" >&2
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -e "$REPO[dev]"
  echo "$stamp" >"$VENV/.agad-installed"
fi

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
# The console's browser tests drive Debian's chromium through chromium-driver (Selenium).
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing chromium and chromium-driver (apt) for the console's browser tests" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } ||
      echo "setup: apt-get could not install chromium; the console's browser tests will fail" >&2
  else
    echo "setup: chromium/chromedriver missing and not root: run 'apt-get install chromium chromium-driver'" >&2
  fi
fi
stamp="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
if [[ "$(cat "$VENV/.agad-installed" 2>/dev/null)" != "$stamp" ]]; then
  echo "setup: installing agad-stream and its dependencies into $VENV (torch is a ~2.7 GB download)" >&2
  # uv (from PyPI) fetches and unpacks the wheels in parallel and caches them: a cold install of
  # torch and its CUDA wheels takes under a minute, where pip took about 3.7.
  "$VENV/bin/pip" install --quiet "uv>=0.13,<0.14"
  uv_install() { "$VENV/bin/uv" pip install --python "$VENV/bin/python" --quiet "$@"; }
  uv_install -e "$REPO[dev]"
  # Deep SAD for the labels benchmark and its test: deepod 0.4.1's metadata pins torch<1.13.1,
  # but it runs with ours; its other needs (numpy, scipy, scikit-learn, pandas, tqdm) are installed above.
  uv_install --no-deps deepod==0.4.1
  echo "$stamp" >"$VENV/.agad-installed"
fi

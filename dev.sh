#!/usr/bin/env bash
# One script for a fresh clone. Commands:
#   ./dev.sh demo   set everything up, generate sample data and run the whole pipeline on local Spark
#   ./dev.sh test   set everything up and run the whole test suite (the slow end-to-end tests included)
#   ./dev.sh setup  only create .venv and install the project (re-run it after pyproject.toml changes)
# Needs Python 3.11 and Java 17 on PATH; everything else comes from PyPI and Maven Central.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

fail() { echo "dev.sh: $*" >&2; exit 2; }

# Debian's chromium: tests/test_report.py opens the report in it, headless. Skipped when already installed.
install_chromium() {
  command -v chromium >/dev/null && return
  command -v apt-get >/dev/null || { echo "dev.sh: warning: no apt-get; install chromium yourself for tests/test_report.py" >&2; return; }
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  echo "dev.sh: installing chromium (apt-get) for the report's browser test ..."
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || echo "dev.sh: warning: chromium did not install; tests/test_report.py's browser test will fail" >&2
}

setup() {
  local python=${DMP_BOOTSTRAP_PYTHON:-$(command -v python3.11 || command -v python3 || true)}
  [ -n "$python" ] || fail "Python 3.11 not found: install it (e.g. apt-get install python3.11) or set DMP_BOOTSTRAP_PYTHON"
  "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || fail "$python is $("$python" --version 2>&1); dmp needs Python 3.11 (set DMP_BOOTSTRAP_PYTHON)"
  command -v java >/dev/null || fail "java not found: install Java 17 (e.g. apt-get install openjdk-17-jre-headless)"
  java -version 2>&1 | grep -q 'version "17' || echo "dev.sh: warning: Spark 4.1 is tested here with Java 17; found $(java -version 2>&1 | head -1)" >&2
  install_chromium
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  local stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
  if [ ! -f "$stamp" ]; then
    echo "dev.sh: installing dmp and its pinned dependencies into .venv ..."
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[test]"
    rm -f .venv/.installed-* && touch "$stamp"
  fi
}

case "${1:-}" in
  setup) setup ;;
  demo) shift; setup; exec .venv/bin/dmp demo --reset "$@" ;;
  test) shift; setup; exec .venv/bin/python -m pytest "$@" ;;
  *) sed -n '2,6p' "$0"; exit 2 ;;
esac

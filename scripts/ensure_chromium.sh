#!/usr/bin/env bash
# Installs Debian's chromium when no Chromium / Chrome is on PATH: `tacepredict report` prints its PDF with it and
# Testing/test_model_report.py opens the report in it. Returns at once when one is there. Without root or apt-get
# it says why and exits 0: the report then writes its HTML only and the browser test skips, naming the reason.
set -euo pipefail
for name in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$name" >/dev/null 2>&1; then
    exit 0
  fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: no chromium and no apt-get here; install Chromium by hand for the report's PDF" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "ensure_chromium: chromium is missing and installing it needs root (apt-get install chromium)" >&2
    exit 0
  fi
else
  SUDO=
fi
echo "ensure_chromium: installing Debian's chromium (the model report's PDF and its browser test)" >&2
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } >&2; then
  echo "ensure_chromium: apt-get could not install chromium; the report test will skip" >&2
fi
exit 0

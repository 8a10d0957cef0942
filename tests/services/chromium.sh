#!/usr/bin/env bash
# Test service: headless Chromium from Debian's packages, for tests/test_report.py (the run report
# opened in a real browser). Installs it when missing and we are root; otherwise says what to do.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "chromium.sh: chromium is not installed and this is not root: apt-get install chromium (the report's browser test is skipped without it)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }; then
    echo "chromium.sh: WARNING: installing chromium failed; tests/test_report.py will skip its browser test" >&2
fi
exit 0

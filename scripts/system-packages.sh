#!/usr/bin/env bash
# The system side of `make bench` and `make test`, checked in the first seconds, before any
# Python install: Linux (the tool reads /proc), Python 3.11+ with venv and its C headers, a C
# compiler, and the Debian packages the jobs run. Missing packages are installed with apt-get
# when run as root; otherwise this prints the one command that installs them and exits 1, or,
# with ALLOW_MISSING=1, says which jobs will be skipped and goes on.
# Usage: scripts/system-packages.sh PYTHON command:package ...
set -uo pipefail
python=${1:-python3}; shift || true
if [ "$(uname -s)" != Linux ]; then
  echo "error: tokenbench runs on Linux only (it reads /proc); this is $(uname -s)" >&2; exit 1
fi
missing=()
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: tokenbench needs Python 3.11 or newer as '$python' (make PYTHON=python3.11 ...)" >&2
  exit 1
fi
"$python" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
"$python" -c 'import os, sysconfig; os.stat(sysconfig.get_paths()["include"] + "/Python.h")' \
  2>/dev/null || missing+=(python3-dev)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
for cp in "$@"; do
  c=${cp%%:*}; p=${cp##*:}
  command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      "${missing[@]}" >/dev/null); then
    exit 0
  fi
  echo "error: apt-get could not install ${missing[*]}" >&2
fi
fix="sudo apt-get install -y ${missing[*]}"
if [ "${ALLOW_MISSING:-0}" = 1 ]; then
  echo "note: missing ${missing[*]}: the jobs that need them are skipped and named in the report (install with: $fix)"
  exit 0
fi
echo "error: missing ${missing[*]}; install with: $fix (or make ... ALLOW_MISSING=1 to skip what needs them)" >&2
exit 1

#!/usr/bin/env bash
# Installs Autobahn|Testsuite (`wstest`) for tests/autobahn/run.sh.
#
# wstest runs on Python 2.7, which Debian bookworm no longer ships. This
# script (run as root on Debian bookworm, idempotent):
#   1. adds Debian's bullseye suite as an apt source pinned at priority 100,
#      so that nothing already installed moves, and installs python2.7,
#      python2.7-dev and build-essential from it (C extensions get compiled);
#   2. downloads the pip, setuptools and wheel wheels for Python 2.7 with the
#      machine's python3 pip, and virtualenv for python3 into a private folder;
#   3. makes a Python 2.7 virtualenv seeded with those wheels and installs
#      autobahntestsuite into it.
#
# Everything goes under $WEFT_AUTOBAHN_HOME (default /opt/weft-autobahn);
# wstest ends up at $WEFT_AUTOBAHN_HOME/venv/bin/wstest. When that is already
# there with the same pinned versions, the script returns at once.
#
#   bash tests/autobahn/install.sh
set -euo pipefail

home=${WEFT_AUTOBAHN_HOME:-/opt/weft-autobahn}
venv=$home/venv
wheels=$home/wheels

PIP_V=20.3.4
SETUPTOOLS_V=44.1.1
WHEEL_V=0.37.1
VIRTUALENV_V=20.15.1
TESTSUITE_V=25.10.1
stamp_text="autobahntestsuite==$TESTSUITE_V virtualenv==$VIRTUALENV_V pip==$PIP_V setuptools==$SETUPTOOLS_V wheel==$WHEEL_V"

say() { printf 'autobahn install: %s\n' "$*"; }

if [ -x "$venv/bin/wstest" ] && [ -x "$venv/bin/python" ] \
  && [ "$(cat "$home/installed" 2>/dev/null)" = "$stamp_text" ]; then
  say "already installed ($venv/bin/wstest)"
  exit 0
fi

t0=$(date +%s)
export DEBIAN_FRONTEND=noninteractive

# --- 1. Python 2.7 from bullseye, pinned low ------------------------------
if ! command -v /usr/bin/python2.7 >/dev/null 2>&1 || ! [ -e /usr/include/python2.7/Python.h ] \
  || ! command -v gcc >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "install.sh: needs root to install python2.7 with apt" >&2; exit 1; }
  # Mirror the machine's apt source format: deb822 .sources files when the
  # bookworm entries are there, one-line sources.list otherwise.
  if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1 \
    && grep -qs '^Suites:.*bookworm' /etc/apt/sources.list.d/*.sources; then
    # The URIs of the stanzas that serve bookworm (and bookworm-security).
    stanza_uri() { # suite regex
      awk -v RS= -v want="$1" '$0 ~ "Suites:[^\n]*" want { if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { u = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", u); print u; exit } }' \
        /etc/apt/sources.list.d/*.sources
    }
    uri=$(stanza_uri 'bookworm([ \n]|$|-updates)')
    sec=$(stanza_uri 'bookworm-security')
    uri=${uri:-http://deb.debian.org/debian}
    sec=${sec:-http://deb.debian.org/debian-security}
    cat >/etc/apt/sources.list.d/weft-bullseye.sources <<EOF
# Added by weft's tests/autobahn/install.sh for python2.7 (wstest);
# pinned to priority 100 in /etc/apt/preferences.d/weft-bullseye.
Types: deb
URIs: $uri
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $sec
Suites: bullseye-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  else
    uri=$(awk '$1 == "deb" && $0 ~ /bookworm/ && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    uri=${uri:-http://deb.debian.org/debian}
    cat >/etc/apt/sources.list.d/weft-bullseye.list <<EOF
# Added by weft's tests/autobahn/install.sh for python2.7 (wstest);
# pinned to priority 100 in /etc/apt/preferences.d/weft-bullseye.
deb $uri bullseye main
deb http://deb.debian.org/debian-security bullseye-security main
EOF
  fi
  cat >/etc/apt/preferences.d/weft-bullseye <<'EOF'
# bullseye only for what bookworm lacks (python2.7): never preferred.
Package: *
Pin: release n=bullseye
Pin-Priority: 100

Package: *
Pin: release n=bullseye-security
Pin-Priority: 100
EOF
  say "apt: python2.7 and python2.7-dev from bullseye (pinned at 100)"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python2.7 python2.7-dev build-essential >/dev/null
fi
py2=/usr/bin/python2.7
"$py2" -c 'import sys; assert sys.version_info[:2] == (2, 7)'

# --- 2. Bootstrap wheels and virtualenv --------------------------------------
py3=$(command -v python3 || true)
[ -n "$py3" ] || { echo "install.sh: python3 is needed" >&2; exit 1; }
if ! "$py3" -m pip --version >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "install.sh: python3 has no pip" >&2; exit 1; }
  apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
fi
mkdir -p "$wheels"
say "wheels for Python 2.7: pip==$PIP_V setuptools==$SETUPTOOLS_V wheel==$WHEEL_V"
"$py3" -m pip download -q --disable-pip-version-check --no-deps --dest "$wheels" \
  --python-version 2.7 --implementation py --only-binary=:all: \
  "pip==$PIP_V" "setuptools==$SETUPTOOLS_V" "wheel==$WHEEL_V"
if ! PYTHONPATH=$home/virtualenv-py3 "$py3" -c "import virtualenv, sys; sys.exit(virtualenv.__version__ != '$VIRTUALENV_V')" 2>/dev/null; then
  say "virtualenv==$VIRTUALENV_V (for python3, in $home/virtualenv-py3)"
  rm -rf "$home/virtualenv-py3"
  "$py3" -m pip install -q --disable-pip-version-check --target "$home/virtualenv-py3" "virtualenv==$VIRTUALENV_V"
fi

# --- 3. The Python 2.7 virtualenv with autobahntestsuite ---------------------
rm -rf "$venv"
say "virtualenv $venv (python2.7)"
PYTHONPATH=$home/virtualenv-py3 "$py3" -m virtualenv -q --no-periodic-update \
  --app-data "$home/virtualenv-app-data" --extra-search-dir "$wheels" --never-download \
  --pip "$PIP_V" --setuptools "$SETUPTOOLS_V" --wheel "$WHEEL_V" \
  -p "$py2" "$venv"
say "autobahntestsuite==$TESTSUITE_V"
PIP_NO_PYTHON_VERSION_WARNING=1 "$venv/bin/pip" install -q --disable-pip-version-check \
  --cache-dir "$home/pip-cache" "autobahntestsuite==$TESTSUITE_V"
"$venv/bin/wstest" --help >/dev/null
echo "$stamp_text" >"$home/installed"
say "done in $(( $(date +%s) - t0 ))s: $venv/bin/wstest"

#!/usr/bin/env bash
# Create (idempotently) one of the repo's Python virtualenvs and install its pinned test
# tooling:
#
#   scripts/python-env.sh          ./.venv from tests/sdk/requirements.txt (official Polytomic
#                                  SDK 25.x, pytest, psycopg, moto, boto3, pyarrow, requests)
#   scripts/python-env.sh dagster  ./.venv-dagster from tests/dagster/requirements.txt
#                                  (dagster-polytomic, which needs the 1.x Polytomic SDK)
#
# Re-running is cheap: the pip install is skipped while <venv>/.stamp-<hash of the
# requirements file> exists. Edit the requirements file and the next run reinstalls.
#
# Environment:
#   PYTHON   interpreter used to create the venv (default: python3)
#   VENV     venv location (default: <repo>/.venv, or <repo>/.venv-<name> for a named one)
#
# Works on a fresh Debian machine: installs python3 / python3-venv with apt-get when missing
# (through sudo when not root).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-sdk}" in
    sdk) venv="${VENV:-$repo_root/.venv}" req="$repo_root/tests/sdk/requirements.txt" ;;
    dagster) venv="${VENV:-$repo_root/.venv-dagster}" req="$repo_root/tests/dagster/requirements.txt" ;;
    *) printf 'usage: %s [sdk|dagster]\n' "$0" >&2; exit 2 ;;
esac
python="${PYTHON:-python3}"

log() { printf 'python-env: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

apt_updated=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        apt_updated=1
    fi
    log "apt-get install $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

[ -f "$req" ] || die "requirements file not found: $req"

# 1. An interpreter.
if ! command -v "$python" >/dev/null 2>&1; then
    [ "$python" = python3 ] || die "PYTHON=$python not found"
    apt_install python3 python3-venv
fi

# 2. The venv. A venv whose interpreter no longer runs (python upgraded or removed) is rebuilt.
if [ -e "$venv" ] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "removing broken venv at $venv"
    rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
    log "creating venv at $venv ($("$python" --version 2>&1))"
    if ! "$python" -m venv "$venv" >&2; then
        # Debian's python3 ships venv/ensurepip separately (python3-venv / python3.X-venv).
        rm -rf "$venv"
        apt_install python3-venv
        "$python" -m venv "$venv" >&2 || die "could not create a venv with $python"
    fi
else
    log "venv exists: $venv"
fi

# 3. The packages, unless this exact requirements file was installed already.
hash="$(sha256sum "$req" | cut -c1-16)"
stamp="$venv/.stamp-$hash"
if [ -f "$stamp" ]; then
    log "requirements up to date (stamp $(basename "$stamp"))"
else
    log "installing $(grep -cvE '^\s*(#|$)' "$req") pinned requirements from ${req#"$repo_root"/}"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    "$venv/bin/python" -m pip install -q -r "$req" >&2
    "$venv/bin/python" - "$req" <<'PY' >&2
import importlib.metadata as md, re, sys
names = [re.split(r"[\[=<>~! ;]", line.strip())[0] for line in open(sys.argv[1])]
names = [n for n in names if n and not n.startswith("#")]
print("python-env:", " | ".join(f"{n} {md.version(n)}" for n in names))
PY
    rm -f "$venv"/.stamp-*
    : >"$stamp"
fi

log "ready: $venv/bin/python ($("$venv/bin/python" --version 2>&1))"

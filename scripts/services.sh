#!/usr/bin/env bash
# Make sure the services Syncline's tests need are reachable, installing and starting them on a
# fresh Debian machine when they are not:
#   * PostgreSQL  (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres, trust auth,
#                  wal_level = logical for the CDC tests: set on a local cluster, else a warning)
#   * Redis       (REDIS_URL,    default redis://127.0.0.1:6379)
#   * MariaDB     (MARIADB_URL,  default mysql://root@127.0.0.1:3306/test, root without a
#                  password over TCP; the URL's database is created when missing)
#   * just        (the task runner used by the justfile)
# Idempotent: when everything already answers, it only checks and prints.
#
# Usage:
#   scripts/services.sh            # diagnostics on stderr, then DATABASE_URL=..., REDIS_URL=..., MARIADB_URL=...
#   eval "$(scripts/services.sh --env)"   # stdout carries only the three export lines
#
# Installs use apt-get (through sudo when not root); `just` falls back to PyPI's rust-just wheel
# and then to `cargo install just --locked` when Debian has no package for it (bookworm has none).
set -euo pipefail

mode="plain"
for arg in "$@"; do
    case "$arg" in
        --env) mode="env" ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "services.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

# Everything except the final URL lines goes to stderr, so `--env` output can be eval'd.
log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
as_root() { "${SUDO[@]}" "$@"; }

apt_updated=0
apt_update_once() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install the missing packages by hand"
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        apt_updated=1
    fi
}
apt_install() {
    apt_update_once
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}
# True when apt knows an installable candidate for the package.
apt_has_candidate() {
    apt_update_once
    local cand
    cand="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')"
    [ -n "$cand" ] && [ "$cand" != "(none)" ]
}

# ---------------------------------------------------------------- PostgreSQL

DEFAULT_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"

pg_answers() {  # trust auth on TCP: a query must succeed without a password
    PGCONNECT_TIMEOUT=5 psql -X -w -q -At -h 127.0.0.1 -p 5432 -U postgres -d postgres \
        -c 'select 1' >/dev/null 2>&1
}

pg_latest_version() {  # newest installed server version, e.g. 15 (empty when none)
    local bin
    for bin in /usr/lib/postgresql/*/bin/postgres; do
        if [ -x "$bin" ]; then basename "$(dirname "$(dirname "$bin")")"; fi
    done | sort -V | tail -n 1
}

# The awk condition that selects the pg_hba.conf lines we want as trust.
# (The awk programs below are single-quoted on purpose: $4, $5 are awk fields.)
# shellcheck disable=SC2016
HBA_LOOPBACK='$1 == "host" && ($4 == "127.0.0.1/32" || $4 == "::1/128")'

pg_trust_localhost() {  # rewrite `host` lines for 127.0.0.1/32 and ::1/128 to trust, reload
    local ver="$1" hba="/etc/postgresql/$1/main/pg_hba.conf"
    [ -f "$hba" ] || return 0
    # Nothing to do when every loopback `host` line says trust and the IPv4 one exists.
    # shellcheck disable=SC2016
    if as_root awk "$HBA_LOOPBACK"' { n++; if ($5 != "trust") bad = 1 } END { exit (bad || !n) }' "$hba"; then
        return 0
    fi
    log "PostgreSQL: setting trust auth for host 127.0.0.1/32 and ::1/128 in $hba"
    as_root cp -p "$hba" "$hba.syncline-bak"
    local tmp
    tmp="$(mktemp)"
    # shellcheck disable=SC2016
    as_root awk "$HBA_LOOPBACK"' { $5 = "trust"; NF = 5; n++ } { print }
        END { if (!n) { print "host all all 127.0.0.1/32 trust"; print "host all all ::1/128 trust" } }' \
        "$hba.syncline-bak" >"$tmp"
    # Write the content back in place so the file keeps its owner and mode.
    # shellcheck disable=SC2016
    as_root sh -c 'cat "$1" > "$2"' _ "$tmp" "$hba"
    rm -f "$tmp"
    if pg_isready -q -h 127.0.0.1 -p 5432; then
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >&2 || true
    fi
}

ensure_postgres() {
    if [ -n "${DATABASE_URL:-}" ]; then
        command -v psql >/dev/null 2>&1 || apt_install postgresql-client
        log "PostgreSQL: checking DATABASE_URL from the environment"
        PGCONNECT_TIMEOUT=5 psql -X -w -q -At "$DATABASE_URL" -c 'select 1' >/dev/null \
            || die "DATABASE_URL is set but does not answer 'select 1'"
        log "PostgreSQL: ok (DATABASE_URL)"
        return
    fi

    if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
        apt_install postgresql-client
    fi

    if pg_isready -q -h 127.0.0.1 -p 5432 && pg_answers; then
        log "PostgreSQL: ok on 127.0.0.1:5432"
        DATABASE_URL="$DEFAULT_DATABASE_URL"
        return
    fi

    local ver
    ver="$(pg_latest_version)"
    if [ -z "$ver" ]; then
        log "PostgreSQL: no server installed"
        apt_install postgresql postgresql-client
        ver="$(pg_latest_version)"
        [ -n "$ver" ] || die "postgresql installed but no server binary found under /usr/lib/postgresql"
    fi
    if [ ! -d "/etc/postgresql/$ver/main" ]; then
        log "PostgreSQL: creating cluster $ver/main"
        as_root pg_createcluster "$ver" main >&2
    fi
    pg_trust_localhost "$ver"

    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        log "PostgreSQL: starting cluster $ver/main"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 || true
    fi
    local _
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 -p 5432 && break
        sleep 1
    done
    pg_isready -q -h 127.0.0.1 -p 5432 \
        || die "PostgreSQL $ver does not answer on 127.0.0.1:5432 (see /var/log/postgresql/)"
    if ! pg_answers; then
        # It runs, but host connections still want a password (the cluster predates us, or
        # another config file is in use): force trust for loopback and retry.
        pg_trust_localhost "$ver"
        sleep 1
        pg_answers || die "PostgreSQL answers on 127.0.0.1:5432 but rejects user postgres without a password"
    fi
    log "PostgreSQL: ok on 127.0.0.1:5432 (cluster $ver/main)"
    DATABASE_URL="$DEFAULT_DATABASE_URL"
}

# Logical replication (the CDC tests) needs wal_level = logical, which takes a restart. A cluster
# of this machine behind DATABASE_URL gets it set once; any other server only gets a warning.
ensure_wal_level() {
    local settings level datadir port addr local_server cluster ver name _
    settings="$(PGCONNECT_TIMEOUT=5 psql -X -w -q -At "$DATABASE_URL" -c "select current_setting('wal_level'),
        current_setting('data_directory'), current_setting('port'), coalesce(host(inet_server_addr()), '')" \
        2>/dev/null || true)"
    IFS='|' read -r level datadir port addr <<<"$settings"
    if [ "$level" = logical ]; then
        log "PostgreSQL: wal_level = logical"
        return
    fi
    cluster=""
    # A Unix socket (no address) or loopback reaches this machine's server.
    case "$addr" in "" | 127.* | ::1) local_server=1 ;; *) local_server=0 ;; esac
    if [ -n "$datadir" ] && [ "$local_server" -eq 1 ] && command -v pg_lsclusters >/dev/null 2>&1; then
        # shellcheck disable=SC2016
        cluster="$(pg_lsclusters -h 2>/dev/null \
            | awk -v dir="$datadir" -v port="$port" '$6 == dir && $3 == port { print $1, $2; exit }')"
    fi
    if [ -z "$cluster" ]; then
        log "warning: wal_level is ${level:-unknown} on the server of DATABASE_URL; the CDC tests need" \
            "wal_level = logical (ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL)"
        return
    fi
    read -r ver name <<<"$cluster"
    log "PostgreSQL: setting wal_level = logical on cluster $ver/$name (wal_level was $level; restarting it)"
    PGCONNECT_TIMEOUT=5 psql -X -w -q -At "$DATABASE_URL" -c 'alter system set wal_level = logical' >/dev/null \
        || die "cannot ALTER SYSTEM SET wal_level = logical on cluster $ver/$name"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" restart >&2
    for _ in $(seq 1 30); do
        level="$(PGCONNECT_TIMEOUT=5 psql -X -w -q -At "$DATABASE_URL" -c 'show wal_level' 2>/dev/null || true)"
        [ -n "$level" ] && break
        sleep 1
    done
    [ "$level" = logical ] || die "wal_level is ${level:-unknown} after restarting cluster $ver/$name"
    log "PostgreSQL: wal_level = logical"
}

# --------------------------------------------------------------------- Redis

DEFAULT_REDIS_URL="redis://127.0.0.1:6379"

ensure_redis() {
    command -v redis-cli >/dev/null 2>&1 || apt_install redis-tools

    if [ -n "${REDIS_URL:-}" ]; then
        log "Redis: checking REDIS_URL from the environment"
        [ "$(redis-cli -u "$REDIS_URL" ping 2>/dev/null)" = "PONG" ] \
            || die "REDIS_URL is set but does not answer PING"
        log "Redis: ok (REDIS_URL)"
        return
    fi

    if [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; then
        log "Redis: ok on 127.0.0.1:6379"
        REDIS_URL="$DEFAULT_REDIS_URL"
        return
    fi

    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    log "Redis: starting redis-server on 127.0.0.1:6379 (no persistence)"
    # --dir: keep any stray file out of the caller's working directory.
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir "${TMPDIR:-/tmp}" >&2
    local _
    for _ in $(seq 1 20); do
        [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ] && break
        sleep 0.5
    done
    [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ] \
        || die "redis-server started but does not answer PING on 127.0.0.1:6379"
    log "Redis: ok on 127.0.0.1:6379"
    REDIS_URL="$DEFAULT_REDIS_URL"
}

# ------------------------------------------------------------------- MariaDB

DEFAULT_MARIADB_URL="mysql://root@127.0.0.1:3306/test"

# Splits a mysql://user[:password]@host[:port][/database] URL into MY_USER, MY_PASSWORD,
# MY_HOST, MY_PORT and MY_DATABASE (percent-escapes in user and password are decoded).
mariadb_parse_url() {
    local re='^mysql://([^:@/]+)(:([^@/]*))?@([^:/?]+)(:([0-9]+))?(/([^/?]*))?$'
    [[ "$1" =~ $re ]] || die "not a mysql://user[:password]@host[:port]/database URL: $1"
    MY_USER="$(printf '%b' "${BASH_REMATCH[1]//%/\\x}")"
    MY_PASSWORD="$(printf '%b' "${BASH_REMATCH[3]//%/\\x}")"
    MY_HOST="${BASH_REMATCH[4]}"
    MY_PORT="${BASH_REMATCH[6]:-3306}"
    MY_DATABASE="${BASH_REMATCH[8]}"
}

# The client on the parsed URL, over TCP; the password goes through the environment, not argv.
my_sql() {
    MYSQL_PWD="$MY_PASSWORD" mariadb --no-defaults --protocol=TCP --connect-timeout=5 \
        -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" -N -B "$@"
}

my_answers() { my_sql -e 'select 1' >/dev/null 2>&1; }

mariadb_alive() {  # the server takes connections (whether or not it lets us in)
    mariadb-admin --no-defaults --protocol=TCP --connect-timeout=5 -h 127.0.0.1 -P 3306 ping >/dev/null 2>&1
}

mariadb_server_installed() { [ -x /usr/sbin/mariadbd ] || [ -x /usr/sbin/mysqld ]; }

mariadb_start() {
    log "MariaDB: starting the server"
    if command -v service >/dev/null 2>&1 && [ -x /etc/init.d/mariadb ]; then
        as_root service mariadb start >&2 || true
    elif [ -x /etc/init.d/mariadb ]; then
        as_root /etc/init.d/mariadb start >&2 || true
    fi
    local _
    for _ in $(seq 1 30); do
        mariadb_alive && return 0
        sleep 1
    done
    die "MariaDB does not answer on 127.0.0.1:3306 (see /var/log/mysql/)"
}

# Lets root in over TCP from the loopback without a password, through the server's socket as
# the system's root (Debian's root@localhost authenticates with unix_socket).
mariadb_passwordless_root() {
    log "MariaDB: letting root connect from 127.0.0.1 and ::1 without a password"
    local host grants=""
    for host in 127.0.0.1 ::1; do
        grants+="create user if not exists 'root'@'$host'; alter user 'root'@'$host' identified by '';"
        grants+="grant all privileges on *.* to 'root'@'$host' with grant option;"
    done
    as_root mariadb --protocol=SOCKET -u root -e "$grants flush privileges;" >&2
}

ensure_mariadb() {
    command -v mariadb >/dev/null 2>&1 || apt_install mariadb-client
    if [ -n "${MARIADB_URL:-}" ]; then
        log "MariaDB: checking MARIADB_URL from the environment"
        mariadb_parse_url "$MARIADB_URL"
        my_answers || die "MARIADB_URL is set but does not answer 'select 1'"
    else
        MARIADB_URL="$DEFAULT_MARIADB_URL"
        mariadb_parse_url "$MARIADB_URL"
        if ! my_answers; then
            mariadb_server_installed || apt_install mariadb-server mariadb-client
            mariadb_alive || mariadb_start
            my_answers || mariadb_passwordless_root
            my_answers || die "MariaDB answers on 127.0.0.1:3306 but rejects root without a password"
        fi
    fi
    if [ -n "$MY_DATABASE" ]; then
        my_sql -e "create database if not exists \`$MY_DATABASE\` character set utf8mb4" >&2 \
            || die "cannot create MariaDB database $MY_DATABASE"
    fi
    log "MariaDB: ok on $MY_HOST:$MY_PORT (database ${MY_DATABASE:-none})"
}

# ---------------------------------------------------------------------- just

ensure_just() {
    if command -v just >/dev/null 2>&1; then
        log "just: ok ($(just --version 2>&1))"
        return
    fi
    if apt_has_candidate just; then
        apt_install just
    elif command -v python3 >/dev/null 2>&1 && install_just_from_pypi; then
        :
    elif command -v cargo >/dev/null 2>&1; then
        log "just: not packaged by this Debian release; cargo install just --locked (compiles, takes a few minutes)"
        cargo install just --locked >&2
        # rustup puts ~/.cargo/bin on PATH for login shells; make it visible to plain ones too.
        if ! command -v just >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/just" ]; then
            as_root ln -sf "$HOME/.cargo/bin/just" /usr/local/bin/just
        fi
    else
        die "cannot install just: no Debian package, no python3, no cargo"
    fi
    hash -r
    command -v just >/dev/null 2>&1 || die "just was installed but is not on PATH"
    log "just: ok ($(just --version 2>&1))"
}

# PyPI's rust-just wheel carries the prebuilt just binary: seconds instead of a cargo build.
# It goes into a private venv; /usr/local/bin/just links to it.
install_just_from_pypi() {
    local tools="${XDG_CACHE_HOME:-$HOME/.cache}/syncline/tools-venv"
    log "just: not packaged by this Debian release; installing PyPI's rust-just into $tools"
    { [ -x "$tools/bin/python" ] || python3 -m venv "$tools" >&2; } || return 1
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$tools/bin/python" -m pip install -q 'rust-just==1.59.0' >&2 \
        || return 1
    [ -x "$tools/bin/just" ] || return 1
    as_root ln -sf "$tools/bin/just" /usr/local/bin/just
}

# ---------------------------------------------------------------------- main

ensure_postgres
ensure_wal_level
ensure_redis
ensure_mariadb
ensure_just

export DATABASE_URL REDIS_URL MARIADB_URL
if [ "$mode" = env ]; then
    printf 'export DATABASE_URL=%q\nexport REDIS_URL=%q\nexport MARIADB_URL=%q\n' "$DATABASE_URL" "$REDIS_URL" "$MARIADB_URL"
else
    printf 'DATABASE_URL=%s\nREDIS_URL=%s\nMARIADB_URL=%s\n' "$DATABASE_URL" "$REDIS_URL" "$MARIADB_URL"
fi

#!/usr/bin/env bash
# Starts the servers the test suite talks to, on loopback only: a private PostgreSQL cluster and
# a Redis server and a NATS server with JetStream, installing them from Debian first when they
# are missing (with docker-registry, which the image tests start themselves). Idempotent: a
# server already answering is left as it is. Source it to get the URLs:
#   . scripts/test-services.sh   ->  ALTO_TEST_POSTGRES_URL, ALTO_TEST_REDIS_URL, ALTO_TEST_NATS_URL
set -euo pipefail

PG_PORT="${ALTO_TEST_PG_PORT:-55432}"
REDIS_PORT="${ALTO_TEST_REDIS_PORT:-56379}"
NATS_PORT="${ALTO_TEST_NATS_PORT:-54222}"
STATE="${ALTO_TEST_SERVICES_DIR:-/tmp/alto-test-services}"

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
# Backups of a PostgreSQL instance run pg_dump and pg_restore.
command -v pg_restore >/dev/null 2>&1 || need+=(postgresql-client)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
# The registry tests push and pull with skopeo.
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
# The image tests build images from busybox-static, run token auth with an openssl
# certificate and basic auth with a bcrypt htpasswd file (apache2-utils).
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The template tests deploy from a local git repository.
command -v git >/dev/null 2>&1 || need+=(git)
# The HTTPS tests get certificates from pebble, Let's Encrypt's ACME test server, and its DNS.
command -v pebble >/dev/null 2>&1 || need+=(pebble)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing ${need[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The catalogue's postgres-adminer test builds an adminer image from Debian's adminer and PHP,
# without what adminer recommends (php-cgi stands for the web server it depends on, so apache2
# is neither installed nor started).
if ! dpkg -s adminer php-cli php-pgsql php-cgi >/dev/null 2>&1; then
  echo "installing adminer and PHP for the catalogue test"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends adminer php-cli php-pgsql php-cgi >/dev/null
fi

# The sandbox tests (compute/sandbox): QEMU for microVMs, e2fsprogs for their root disks, lz4 to
# cut the PVH vmlinux out of the kernel package (which the tests fetch with `apt-get download`,
# so the package lists must know it), iproute2 and nftables for the process driver's network,
# gcc for the sandbox launcher.
sandbox_need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || sandbox_need+=(qemu-system-x86)
command -v mkfs.ext4 >/dev/null 2>&1 || sandbox_need+=(e2fsprogs)
command -v lz4 >/dev/null 2>&1 || sandbox_need+=(lz4)
command -v ip >/dev/null 2>&1 || sandbox_need+=(iproute2)
command -v nft >/dev/null 2>&1 || sandbox_need+=(nftables)
command -v cpio >/dev/null 2>&1 || sandbox_need+=(cpio)
dpkg -s busybox-static >/dev/null 2>&1 || sandbox_need+=(busybox-static)
# The sandbox launcher (compute/sandbox/launcher/alto-enter.c) is compiled on first use, static.
command -v cc >/dev/null 2>&1 || sandbox_need+=(gcc)
dpkg -s libc6-dev >/dev/null 2>&1 || sandbox_need+=(libc6-dev)
# The scripts that run inside sandboxes (compute/sandbox/guest/*.sh) are checked by shellcheck
# (scripts.test.ts), and the guest agent assembled again from its source with binutils.
command -v shellcheck >/dev/null 2>&1 || sandbox_need+=(shellcheck)
command -v objcopy >/dev/null 2>&1 || sandbox_need+=(binutils)
if [ "${#sandbox_need[@]}" -gt 0 ] || ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
  echo "installing ${sandbox_need[*]:-nothing} for the sandbox tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  [ "${#sandbox_need[@]}" -eq 0 ] || apt-get install -y -qq --no-install-recommends "${sandbox_need[@]}" >/dev/null
fi

# The console's browser tests (packages/alto/test/console.e2e.test.ts): Debian's chromium,
# driven by playwright-core.
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium for the console's browser tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

mkdir -p "$STATE"
chmod 755 "$STATE"

# PostgreSQL: a throwaway cluster owned by the postgres user, trust auth on 127.0.0.1 only.
PG_BIN="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")"
if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
  rm -rf "$STATE/pg"
  mkdir -p "$STATE/pg"
  chown postgres:postgres "$STATE/pg"
  su postgres -s /bin/sh -c "'$PG_BIN/initdb' -D '$STATE/pg/data' -U postgres --auth=trust -E UTF8 >/dev/null"
  su postgres -s /bin/sh -c "'$PG_BIN/pg_ctl' -D '$STATE/pg/data' -l '$STATE/pg/log' -w -o \"-h 127.0.0.1 -p $PG_PORT -k '$STATE/pg' -c fsync=off -c max_connections=200\" start >/dev/null"
fi

# Redis: no persistence, loopback only.
if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes \
    --logfile "$STATE/redis.log" --dir "$STATE"
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# NATS with JetStream, file storage in the state folder, loopback only.
if ! (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null; then
  mkdir -p "$STATE/nats"
  nohup nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$STATE/nats" >"$STATE/nats.log" 2>&1 &
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done
fi

export ALTO_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
export ALTO_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export ALTO_TEST_NATS_URL="nats://127.0.0.1:$NATS_PORT"
echo "test services: $ALTO_TEST_POSTGRES_URL $ALTO_TEST_REDIS_URL $ALTO_TEST_NATS_URL"

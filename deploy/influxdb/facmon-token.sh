#!/bin/bash
# Makes facmon's InfluxDB token: read and write on the telemetry bucket, and
# nothing else. facmon never gets the operator token, which stays in this
# container's CLI configuration (the influxdb-config volume) for the
# administrator.
#
# The influxdb image runs this once, on the first start with an empty data
# volume, from /docker-entrypoint-initdb.d, as root, after it has set up the
# organisation, the bucket and the admin user (DOCKER_INFLUXDB_INIT_*), and
# before the server listens on its port: the token is there before the
# healthcheck passes and facmon starts. It writes the token to
# $FACMON_TOKEN_FILE, in a volume that the facmon service mounts read-only,
# readable by facmon's uid only.
#
# Run it by hand when the InfluxDB volume already existed (an upgrade), or to
# make a new token after deleting the file (docs/deployment.md, "InfluxDB"):
#   docker compose exec influxdb /docker-entrypoint-initdb.d/facmon-token.sh
set -euo pipefail

# The image exports the bucket's id to its init scripts only. A failing init
# script would leave InfluxDB unable to start again (the image then deletes
# its data but keeps the CLI configuration the setup wrote, and the next
# setup refuses to overwrite it), so at the first start a failure is
# reported and the server starts anyway: facmon then says that it has no
# token, and this script can be run again by hand.
if [ -n "${DOCKER_INFLUXDB_INIT_BUCKET_ID:-}" ] && [ -z "${FACMON_TOKEN_RETRY:-}" ]; then
    FACMON_TOKEN_RETRY=1 "$0" || echo "facmon-token: failed; once InfluxDB is up, run" \
        "'docker compose exec influxdb $0'" >&2
    exit 0
fi

out=${FACMON_TOKEN_FILE:?the compose file sets FACMON_TOKEN_FILE}
owner=${FACMON_TOKEN_OWNER:-10001:10001}
org=${DOCKER_INFLUXDB_INIT_ORG:?}
bucket=${DOCKER_INFLUXDB_INIT_BUCKET:?}
user=${DOCKER_INFLUXDB_INIT_USERNAME:?}

fail() {
    echo "facmon-token: $*" >&2
    exit 1
}

if [ -s "$out" ]; then
    echo "facmon-token: $out exists; delete it to make a new token"
    exit 0
fi

bucket_id=${DOCKER_INFLUXDB_INIT_BUCKET_ID:-}
if [ -z "$bucket_id" ]; then
    bucket_id=$(influx bucket list --org "$org" --name "$bucket" --hide-headers | cut -f 1)
fi
[ -n "$bucket_id" ] || fail "no bucket $bucket in organisation $org"

# One row without headers: ID, description, token, user name, user ID and
# permissions, separated by tabs.
token=$(influx auth create --org "$org" --user "$user" \
    --description "facmon: read and write bucket $bucket" \
    --read-bucket "$bucket_id" --write-bucket "$bucket_id" --hide-headers | cut -f 3)
case "$token" in
    "" | *[!A-Za-z0-9_=-]*) fail "influx auth create did not answer a token" ;;
esac

mkdir -p "$(dirname "$out")"
tmp=$(mktemp "$(dirname "$out")/.token.XXXXXX")
printf '%s' "$token" >"$tmp"
chown "$owner" "$tmp"
chmod 0400 "$tmp"
mv "$tmp" "$out"
echo "facmon-token: wrote facmon's token for bucket $bucket to $out"

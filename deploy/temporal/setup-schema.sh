#!/bin/sh
# Create or upgrade Temporal's schemas in PostgreSQL with temporal-sql-tool (admin-tools image).
# Idempotent: `setup-schema -v 0.0` leaves a newer schema alone and `update-schema` applies only
# the versions not yet applied, so this runs on every `docker compose up` and after an upgrade of
# the server image. The databases exist already (deploy/postgres/initdb/10-temporal.sh).
set -eu
: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"
port="${DB_PORT:-5432}"
schemas=/etc/temporal/schema/postgresql/v12

sql() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$port" -u "$POSTGRES_USER" "$@"
}

for pair in "${DBNAME:-temporal}:temporal" "${VISIBILITY_DBNAME:-temporal_visibility}:visibility"; do
  db="${pair%%:*}"
  kind="${pair##*:}"
  echo "temporal schema: $db ($kind)"
  sql --db "$db" setup-schema -v 0.0
  sql --db "$db" update-schema -d "$schemas/$kind/versioned"
done
echo "temporal schema: up to date"

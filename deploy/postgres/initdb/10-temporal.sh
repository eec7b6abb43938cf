#!/bin/sh
# Runs once, when the postgresql volume is first initialised (/docker-entrypoint-initdb.d).
# pssync's own role and database come from POSTGRES_USER / POSTGRES_DB; this adds Temporal's
# role and its two databases, so Temporal never holds pssync's (superuser) credentials.
# The schemas inside them are applied by the temporal-schema job on every `up`.
# An existing volume is not touched: with an external PostgreSQL, create these yourself.
set -e
: "${TEMPORAL_DB_PASSWORD:?TEMPORAL_DB_PASSWORD must be set}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set=temporal_password="$TEMPORAL_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN PASSWORD :'temporal_password';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
SQL

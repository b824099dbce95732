#!/bin/bash
# Run once by the official postgres image, when it initialises an empty data directory
# (/docker-entrypoint-initdb.d). Creates the consumer's role and hands it POSTGRES_DB, so that
# the consumer runs its migrations and queries as the owner of its own database, not as the
# superuser. Needs CONSUMER_DB_USER and CONSUMER_DB_PASSWORD in the container's environment.
set -euo pipefail

: "${CONSUMER_DB_USER:?}" "${CONSUMER_DB_PASSWORD:?}" "${POSTGRES_DB:?}"

# psql variables (:"name" quotes an identifier, :'name' a literal), so that no value is ever
# spliced into SQL text.
psql --no-psqlrc --set ON_ERROR_STOP=1 \
  --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  --set role="$CONSUMER_DB_USER" --set password="$CONSUMER_DB_PASSWORD" --set db="$POSTGRES_DB" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
ALTER DATABASE :"db" OWNER TO :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"role";
SQL
echo "Created role $CONSUMER_DB_USER, owner of database $POSTGRES_DB."

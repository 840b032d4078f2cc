#!/bin/sh
# diracx/services: serve the API on 0.0.0.0:8000 (settings: DIRACX_* environment variables;
# the database is migrated first unless --no-migrate). Arguments starting with "-" are added
# to `serve`; any other command runs instead (e.g. `docker run -it diracx/services sh`).
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    exec python -m diracx.routers serve --host 0.0.0.0 --port 8000 "$@"
fi
exec "$@"

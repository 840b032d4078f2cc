#!/bin/sh
# diracx/tasks: start a worker (settings: DIRACX_* environment variables, e.g.
# DIRACX_BROKER_URL and DIRACX_DB_URL). Arguments starting with "-" are added to `worker`
# (e.g. --concurrency 4); any other command runs instead.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    exec python -m diracx.tasks worker "$@"
fi
exec "$@"

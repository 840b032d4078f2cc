#!/bin/sh
# diracx/client: `dirac` with the arguments given, e.g.
#   docker run -e DIRACX_URL=... -e DIRACX_TOKEN=... -v "$PWD:/work" -w /work diracx/client run pipeline.py
# With no argument, `dirac --help`. For a shell: docker run -it --entrypoint sh diracx/client
set -e
if [ "$#" -eq 0 ]; then
    exec dirac --help
fi
if [ "$1" = "dirac" ]; then
    shift
fi
exec dirac "$@"

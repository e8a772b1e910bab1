#!/usr/bin/env bash
# A naive replacement for one slot, with no HAProxy change: docker stop / rm / run of the new
# image, as a `docker restart`-style deploy does. `make bench` runs it for comparison only.
#
#   replace-naive.sh CONTAINER IMAGE [docker run options...]
set -euo pipefail
name=$1 image=$2
shift 2
docker stop "$name" >/dev/null
docker rm "$name" >/dev/null
docker run "$@" "$image" >/dev/null

#!/usr/bin/env bash
# The 2016 method, as a widely read blog post described it, for one slot: take the server's weight
# to 0 over HAProxy's stats socket with socat, sleep a fixed 5 s, replace the container with
# docker stop / rm / run, and set the weight to 1. `make bench` runs it for comparison only.
#
#   replace-2016.sh SOCKET BACKEND/SERVER CONTAINER IMAGE [docker run options...]
set -euo pipefail
socket=$1 server=$2 name=$3 image=$4
shift 4
echo "set weight $server 0" | socat stdio "unix-connect:$socket"
sleep 5
docker stop "$name" >/dev/null
docker rm "$name" >/dev/null
docker run "$@" "$image" >/dev/null
echo "set weight $server 1" | socat stdio "unix-connect:$socket"

#!/bin/sh
# Creates the reconciler's JetStream streams, KV buckets (streams KV_*) and
# durable consumer with the NATS CLI, from the definitions in cli/. They
# match what `reconciler run --stream-replicas 3` creates with the default
# --subject-prefix, --consumer, --ack-wait and --max-deliver (a test checks
# it), so `run` finds them and changes nothing.
#
# Usage: deploy/nats/provision.sh [nats CLI connection flags]
#   e.g. deploy/nats/provision.sh --server nats://nats.internal:4222 --creds reconciler.creds
#
# Resources that exist already are left alone; compare them with
#   nats stream info NAME --json   and   nats consumer info STREAM NAME --json
set -eu
dir=$(cd "$(dirname "$0")" && pwd)/cli

for f in "$dir"/streams/*.json; do
  name=$(basename "$f" .json)
  if nats "$@" stream info "$name" >/dev/null 2>&1; then
    echo "stream $name exists; left alone"
  else
    nats "$@" stream add "$name" --config "$f"
  fi
done

for f in "$dir"/consumers/*/*.json; do
  stream=$(basename "$(dirname "$f")")
  name=$(basename "$f" .json)
  if nats "$@" consumer info "$stream" "$name" >/dev/null 2>&1; then
    echo "consumer $stream/$name exists; left alone"
  else
    nats "$@" consumer add "$stream" --config "$f"
  fi
done

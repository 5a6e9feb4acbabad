#!/usr/bin/env bash
# Regenerates the betterproto2 package (and the upb modules trine_proto.codec uses) from
# trine/v1/*.proto into src/trine_proto.
# Usage: proto/generate.sh [OUT_DIR]   (default: src/trine_proto; the staleness test passes a temp dir)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/src/trine_proto}"
mkdir -p "$out"
python -m grpc_tools.protoc -I "$here" \
  --python_betterproto2_out="$out" \
  --python_betterproto2_opt=client_generation=async,server_generation=async \
  "$here"/trine/v1/*.proto
# The same schema for Google's protobuf runtime (upb, in C): trine_proto.codec encodes and decodes
# the betterproto2 messages through it, many times faster than betterproto2's pure-Python codec.
mkdir -p "$out/_upb"
python -m grpc_tools.protoc -I "$here" --python_out="$out/_upb" "$here"/trine/v1/*.proto

#!/usr/bin/env bash
# Regenerates the betterproto2 packages (and the upb modules trine_proto.codec uses) from the
# .proto files (trine/v1: the public API and the worker stream; trine/engine/v1: the engine's
# storage records) into src/trine_proto.
# Usage: proto/generate.sh [OUT_DIR]   (default: src/trine_proto; the staleness test passes a temp dir)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/src/trine_proto}"
protos=("$here"/trine/v1/*.proto "$here"/trine/engine/v1/*.proto)
mkdir -p "$out"
python -m grpc_tools.protoc -I "$here" \
  --python_betterproto2_out="$out" \
  --python_betterproto2_opt=client_generation=async,server_generation=async \
  "${protos[@]}"
# The same schema for Google's protobuf runtime (upb, in C): trine_proto.codec encodes and decodes
# the betterproto2 messages through it, many times faster than betterproto2's pure-Python codec.
# protoc writes imports between those modules as top-level `trine.…`; they live under _upb.
mkdir -p "$out/_upb"
python -m grpc_tools.protoc -I "$here" --python_out="$out/_upb" "${protos[@]}"
find "$out/_upb" -name '*_pb2.py' -exec sed -i 's/^from trine\./from trine_proto._upb.trine./' {} +

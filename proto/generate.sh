#!/usr/bin/env bash
# Regenerates the betterproto2 package from trine/v1/*.proto into src/trine_proto.
# Usage: proto/generate.sh [OUT_DIR]   (default: src/trine_proto; the staleness test passes a temp dir)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/src/trine_proto}"
mkdir -p "$out"
python -m grpc_tools.protoc -I "$here" \
  --python_betterproto2_out="$out" \
  --python_betterproto2_opt=client_generation=async,server_generation=async \
  "$here"/trine/v1/*.proto

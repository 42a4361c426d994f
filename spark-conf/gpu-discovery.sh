#!/usr/bin/env bash
# Spark's resource discovery script for GPUs (spark.{driver,executor}.resource.gpu.
# discoveryScript): prints {"name":"gpu","addresses":[...]} with the GPU indexes this process
# may use. CUDA_VISIBLE_DEVICES, when set (YARN's GPU plugin and Docker set it), is the answer;
# otherwise nvidia-smi's list; no GPU or no nvidia-smi gives an empty list.
set -u
ids=""
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  ids=${CUDA_VISIBLE_DEVICES}
elif command -v nvidia-smi >/dev/null 2>&1; then
  ids=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | tr -d ' ' | paste -sd, -)
fi
addresses=""
IFS=, read -ra list <<<"$ids"
for id in "${list[@]}"; do
  [ -n "$id" ] && addresses="${addresses:+$addresses,}\"$id\""
done
printf '{"name":"gpu","addresses":[%s]}\n' "$addresses"

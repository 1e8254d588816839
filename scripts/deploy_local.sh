#!/usr/bin/env bash
# A 3-hospital federation on this machine over gRPC with mutual TLS: one server and three client
# processes, each hospital training on its own folder of the built-in data.
# Usage: scripts/deploy_local.sh [WORK_DIR] [PORT]   (run from the repository root after `make demo` or `make test`)
set -euo pipefail
WORK=${1:-runs/deploy-local}
PORT=${2:-8443}
MEDFED=${MEDFED:-.venv/bin/medfed}
mkdir -p "$WORK"

"$MEDFED" generate "$WORK/data" --image-size 32

cat > "$WORK/project.yaml" <<YAML
name: local-demo
server: {host: localhost, port: $PORT}
sites: [hospital_a, hospital_b, hospital_c]
YAML
"$MEDFED" provision "$WORK/project.yaml" -o "$WORK/kits"

cat > "$WORK/job.yaml" <<YAML
name: local-demo
seed: 0
task: segmentation
model: {name: unet, params: {spatial_dims: 2, in_channels: 1, channels: [8, 16, 32], strides: [2, 2]}}
strategy: {name: fedavg}
training: {local_epochs: 1, batch_size: 8, lr: 0.002}
federation: {rounds: 3, min_sites: 2}
round_timeout_s: 300
poll_s: 1
YAML

"$MEDFED" server --kit "$WORK/kits/server" --job "$WORK/job.yaml" --state-dir "$WORK/server" &
server=$!
clients=()
for site in hospital_a hospital_b hospital_c; do
  "$MEDFED" client --kit "$WORK/kits/$site" --data "$WORK/data/$site" --state-dir "$WORK/$site" > "$WORK/$site.log" 2>&1 &
  clients+=($!)
done
trap 'kill "${clients[@]}" "$server" 2>/dev/null || true' EXIT
wait "$server"
"$MEDFED" status --state-dir "$WORK/server"

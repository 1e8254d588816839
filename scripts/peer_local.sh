#!/usr/bin/env bash
# A 3-hospital serverless federation on this machine: three `medfed peer` processes run
# BrainTorrent (or cyclic, or gossip) over mutual TLS, each serving its model on its own port
# and fetching its peers'.
# Usage: scripts/peer_local.sh [WORK_DIR] [FIRST_PORT] [braintorrent|cyclic|gossip]
#   (run from the repository root after `make demo` or `make test`)
set -euo pipefail
WORK=${1:-runs/peer-local}
PORT=${2:-9443}
TOPOLOGY=${3:-braintorrent}
MEDFED=${MEDFED:-.venv/bin/medfed}
SITES=(hospital_a hospital_b hospital_c)
mkdir -p "$WORK"

"$MEDFED" generate "$WORK/data" --image-size 32

cat > "$WORK/project.yaml" <<YAML
name: local-p2p
sites: [hospital_a, hospital_b, hospital_c]
YAML
"$MEDFED" provision "$WORK/project.yaml" -o "$WORK/kits"

cat > "$WORK/peers.yaml" <<YAML
hospital_a: 127.0.0.1:$PORT
hospital_b: 127.0.0.1:$((PORT + 1))
hospital_c: 127.0.0.1:$((PORT + 2))
YAML

cat > "$WORK/p2p.yaml" <<YAML
name: local-p2p
seed: 0
task: segmentation
model: {name: unet, params: {spatial_dims: 2, in_channels: 1, channels: [8, 16, 32], strides: [2, 2]}}
strategy: {name: fedavg}
training: {local_epochs: 1, batch_size: 8, lr: 0.002}
federation: {rounds: 3, topology: $TOPOLOGY}
finish_timeout_s: 120
YAML

peers=()
for site in "${SITES[@]}"; do
  "$MEDFED" peer --kit "$WORK/kits/$site" --job "$WORK/p2p.yaml" --peers "$WORK/peers.yaml" \
    --data "$WORK/data/$site" --state-dir "$WORK/$site" > "$WORK/$site.log" 2>&1 &
  peers+=($!)
done
trap 'kill "${peers[@]}" 2>/dev/null || true' EXIT
for pid in "${peers[@]}"; do wait "$pid"; done
for site in "${SITES[@]}"; do tail -n 2 "$WORK/$site.log"; done

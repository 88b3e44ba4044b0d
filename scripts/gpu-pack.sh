#!/usr/bin/env bash
# Builds the CUDA `miram` binary here (no GPU needed) and packs it for a GPU machine:
# stripped and xz-compressed into target/gpu-pack/miram.xz (about 10 MB; Python's `lzma`
# unpacks it where no `xz` exists). With the repository's `fixtures/`, that is everything
# `scripts/gpu-check.sh` needs on the GPU machine. See docs/gpu.md.
#
#   bash scripts/gpu-pack.sh            # then carry the repository and target/gpu-pack/
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cuda-env.sh
source scripts/cuda-env.sh
features="${MIRAM_GPU_FEATURES:-cuda}"
cargo build --release --features "$features" --target-dir target/cuda --bin miram
mkdir -p target/gpu-pack
strip -o target/gpu-pack/miram target/cuda/release/miram
xz -T0 -9 -f target/gpu-pack/miram
ls -l target/gpu-pack/miram.xz
echo "gpu-pack: target/gpu-pack/miram.xz (features $features); run scripts/gpu-check.sh on the GPU machine"

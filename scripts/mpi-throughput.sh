#!/usr/bin/env bash
# Images per second of pre-training over 1, 2 and 4 MPI processes at the same global batch,
# on generated data, with the binary built with `--features mpi`:
#   cargo build --release --features mpi && bash scripts/mpi-throughput.sh [preset] [global batch]
# Prints one line per world size: the median images/s of the logged steps (the first two
# left out) and the median step time. On a machine with fewer cores than processes the ranks
# share the cores (--oversubscribe): the figures then show the cost of the collective and of
# the sharing, not a speed-up.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-tiny}
global=${2:-16}
bin=target/release/miram
work=${MIRAM_MPI_BENCH_DIR:-target/mpi-throughput}
mkdir -p "$work"
root=""
[ "$(id -u)" -eq 0 ] && root="--allow-run-as-root"
[ -d "$work/data" ] || "$bin" -q --seed 1 synth --out "$work/data" --patients 120
for np in 1 2 4; do
  batch=$((global / np))
  out="$work/run-np$np"
  rm -rf "$out"
  mpirun $root --oversubscribe -np "$np" "$bin" -q --seed 1 pretrain --data "$work/data" \
    --preset "$preset" --out "$out" --epochs "${MIRAM_MPI_BENCH_EPOCHS:-8}" --warmup-epochs 0 --batch-size "$batch" \
    --workers 1 >/dev/null
  python3 - "$out/log.jsonl" "$np" "$batch" <<'PY'
import json, statistics, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"event":"step"' in l][2:]
ips = statistics.median(s["images_per_sec"] for s in steps)
print(f"processes {sys.argv[2]}: batch {sys.argv[3]} each, {len(steps)} steps timed, "
      f"{ips:.1f} images/s, {1000 * int(sys.argv[3]) * int(sys.argv[2]) / ips:.0f} ms per step")
PY
done

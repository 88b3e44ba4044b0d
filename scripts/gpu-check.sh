#!/usr/bin/env bash
# Runs `miram selftest` on a GPU machine, from the repository root, with the binary that
# scripts/gpu-pack.sh packed (target/gpu-pack/miram.xz, or MIRAM_BIN=path) and the
# repository's fixtures. The CUDA libraries come from the machine's own Python packages
# (nvidia-cublas, nvidia-curand, nvidia-cuda-runtime: the ones PyTorch installs); the driver
# library (libcuda.so.1) from the driver. Extra arguments go to `miram selftest`.
#
#   bash scripts/gpu-check.sh                         # writes $OUT or selftest-out/
#   bash scripts/gpu-check.sh --time-presets tiny     # a shorter timing table
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-selftest-out}"
mkdir -p "$out"
bin="${MIRAM_BIN:-}"
if [ -z "$bin" ]; then
  packed=target/gpu-pack/miram.xz
  [ -f "$packed" ] || { echo "gpu-check: no $packed: run scripts/gpu-pack.sh on the build machine first" >&2; exit 1; }
  bin="$(mktemp -d)/miram"
  if command -v xz >/dev/null 2>&1; then
    xz -dc "$packed" >"$bin"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$packed" "$bin"
  fi
  chmod +x "$bin"
fi
# Every lib/ folder of the `nvidia` Python packages (nvidia/cu13/lib, nvidia/cublas/lib, ...).
libs="$(python3 - <<'PY' 2>/dev/null || true
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
dirs = []
for root in nvidia.__path__:
    dirs += sorted(d for d in glob.glob(os.path.join(root, "*", "lib")) if os.path.isdir(d))
print(":".join(dirs))
PY
)"
[ -n "$libs" ] || echo "gpu-check: no nvidia Python packages found; relying on the system's CUDA libraries" >&2
export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
ldd "$bin" | grep -E "not found" && { echo "gpu-check: libraries missing (above)" >&2; exit 1; }
"$bin" --device cuda:0 selftest --fixtures fixtures --out "$out" "$@" 2>&1 | tee "$out/selftest.txt"

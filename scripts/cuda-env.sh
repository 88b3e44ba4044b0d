#!/usr/bin/env bash
# The build environment of the `cuda` feature on a machine without a GPU or a CUDA install.
#
#   source scripts/cuda-env.sh      # installs what is missing, then exports the variables
#   cargo build --release --features cuda
#
# It installs NVIDIA's CUDA 13.0 toolkit pieces from PyPI into a local folder (nvcc, NVVM
# and the CRT headers of one version: a mismatch makes ptxas reject candle's PTX; the CUDA
# runtime, cuBLAS, cuRAND and NVRTC for linking), adds the unversioned library names the
# linker looks for, and builds a stub of the driver library `libcuda.so` (every `cu*` name of
# `cuda.h`, each returning "no device") for linking only: at run time the GPU machine's own driver
# library is loaded, never the stub. See docs/gpu.md.
#
# CUDA 13.0 because the target driver (580) runs CUDA 13.0: PTX from a newer nvcc does not
# load on an older driver. Change CUDA_WHEELS below (all together) for another driver.
#
# Variables it reads:
#   MIRAM_CUDA_DIR      where the toolkit goes (default ~/.cache/miram/cuda-13.0); the
#                       downloaded wheels are kept in $MIRAM_CUDA_DIR/wheels and reused.
#   CUDA_COMPUTE_CAP    the GPU's compute capability without the dot (default 90: Hopper).
# Variables it exports: CUDA_HOME, CUDA_PATH, CUDA_ROOT, CUDA_COMPUTE_CAP, PATH,
#   LIBRARY_PATH (toolkit libraries, NCCL and the driver stub), MIRAM_CUDA_LIB (the folders
#   of the toolkit's libraries and of NCCL's, colon-separated, for LD_LIBRARY_PATH where a
#   program is run), MIRAM_CUDA_STUBS (the folder of the driver stub: on LD_LIBRARY_PATH it
#   lets a CUDA build start without a GPU, for its CPU paths; every CUDA call then reports
#   that there is no device).

CUDA_WHEELS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.0.2.14
  nvidia-curand==10.4.0.35
  # NCCL for the `nccl` feature: 2.28.9 is the newest release built with CUDA 13.0
  # (`strings libnccl.so.2 | grep 'NCCL version'`: 2.28.9+cuda13.0); its library goes to
  # nvidia/nccl/lib, not nvidia/cu13/lib.
  nvidia-nccl-cu13==2.28.9
)

miram_cuda_env() {
  local dir="${MIRAM_CUDA_DIR:-$HOME/.cache/miram/cuda-13.0}"
  local prefix="$dir/prefix"
  local root="$prefix/nvidia/cu13"
  local nccl="$prefix/nvidia/nccl/lib"
  local stubs="$dir/stubs"
  local stamp="$dir/installed.txt"
  local want
  want="$(printf '%s\n' "${CUDA_WHEELS[@]}")"

  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "cuda-env: installing CUDA 13.0 build pieces into $dir" >&2
    local py
    py="$(command -v python3 || command -v python)" || {
      echo "cuda-env: python3 with pip is needed to download NVIDIA's wheels" >&2
      return 1
    }
    mkdir -p "$dir/wheels" || return 1
    # Already-downloaded wheels are reused; only missing ones are fetched.
    "$py" -m pip download --quiet --no-deps --disable-pip-version-check --only-binary=:all: \
      -d "$dir/wheels" "${CUDA_WHEELS[@]}" >&2 || {
      echo "cuda-env: downloading ${CUDA_WHEELS[*]} from PyPI failed" >&2
      return 1
    }
    rm -rf "$prefix"
    "$py" -m pip install --quiet --root-user-action=ignore --no-deps --no-index --find-links "$dir/wheels" \
      --target "$prefix" "${CUDA_WHEELS[@]}" >&2 || {
      echo "cuda-env: installing the wheels into $prefix failed" >&2
      return 1
    }
    [ -x "$root/bin/nvcc" ] || {
      echo "cuda-env: $root/bin/nvcc is missing after the install" >&2
      return 1
    }
    # The wheels carry only versioned libraries (libcudart.so.13, ...); the linker asks
    # for the unversioned names.
    local lib base
    for lib in "$root"/lib/lib*.so.* "$nccl"/lib*.so.*; do
      base="${lib%%.so.*}.so"
      [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
    done
    miram_cuda_driver_stub "$root/include/cuda.h" "$stubs" || return 1
    printf '%s\n' "$want" >"$stamp"
  fi

  export CUDA_HOME="$root" CUDA_PATH="$root" CUDA_ROOT="$root"
  export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
  export MIRAM_CUDA_LIB="$root/lib:$nccl" MIRAM_CUDA_STUBS="$stubs"
  case ":$PATH:" in *":$root/bin:"*) ;; *) export PATH="$root/bin:$PATH" ;; esac
  export LIBRARY_PATH="$root/lib:$nccl:$stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
  echo "cuda-env: $(nvcc --version | tail -n 2 | head -n 1); CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP" >&2
}

# Builds `libcuda.so` with every function name that cuda.h declares (after the
# preprocessor, so that `cuCtxCreate` is the exported `cuCtxCreate_v2`), for linking only.
miram_cuda_driver_stub() {
  local header="$1" out="$2"
  mkdir -p "$out" || return 1
  local names
  # The names before and after the preprocessor: both spellings link.
  names="$({ cat "$header"; cc -E -P -I "$(dirname "$header")" "$header"; } |
    grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d '( \t' | sort -u)"
  local count
  count="$(printf '%s\n' "$names" | grep -c .)"
  if [ "$count" -lt 300 ]; then
    echo "cuda-env: found only $count driver functions in $header" >&2
    return 1
  fi
  # Each returns CUDA_ERROR_NO_DEVICE (100): a program that finds the stub at run time says
  # there is no GPU instead of crashing.
  printf '%s\n' "$names" | sed 's/.*/int &(void) { return 100; }/' >"$out/libcuda-stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$out/libcuda.so" "$out/libcuda-stub.c" || return 1
  ln -sf libcuda.so "$out/libcuda.so.1"
  echo "cuda-env: driver stub with $count functions in $out (linking only)" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Run rather than sourced: install, then print the variables for `eval`.
  set -euo pipefail
  miram_cuda_env
  for v in CUDA_HOME CUDA_PATH CUDA_ROOT CUDA_COMPUTE_CAP PATH LIBRARY_PATH MIRAM_CUDA_LIB MIRAM_CUDA_STUBS; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done
else
  miram_cuda_env
fi

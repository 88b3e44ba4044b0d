#!/usr/bin/env bash
# Installs what the `mpi` feature needs to build and run where it is missing: OpenMPI (the
# library, its headers and `mpirun`) and libclang (rsmpi generates its bindings with it).
# Debian/Ubuntu packages; elsewhere install OpenMPI (or MPICH) and libclang by hand.
set -euo pipefail
need=()
command -v mpirun >/dev/null 2>&1 || need+=(openmpi-bin)
[ -e /usr/include/mpi.h ] || [ -n "$(ls /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h 2>/dev/null)" ] || need+=(libopenmpi-dev)
# libclang itself (libclang.so / libclang-N.so), not libclang-cpp, which some images carry alone.
ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
  /usr/lib/x86_64-linux-gnu/libclang-[0-9]*.so* >/dev/null 2>&1 || need+=(libclang-dev)
if [ ${#need[@]} -eq 0 ]; then
  echo "mpi-env: OpenMPI and libclang are installed"
  exit 0
fi
echo "mpi-env: installing ${need[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null

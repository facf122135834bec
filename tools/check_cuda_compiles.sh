#!/usr/bin/env bash
# Compile csrc/cuda/*.cu with nvcc against the installed torch's headers, without linking or
# running: a type/syntax check of the CUDA kernels on a machine with nvcc but no GPU and a
# CPU-only torch (whose headers lack c10/cuda/impl/cuda_cmake_macros.h; a stub stands in).
# Usage: tools/check_cuda_compiles.sh [python]     (arch: TORCH_CUDA_ARCH_LIST, default 9.0)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${1:-python3}"
inc="$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))')"
arch="${TORCH_CUDA_ARCH_LIST:-9.0}"; arch="${arch//./}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
if [ ! -f "$inc/c10/cuda/impl/cuda_cmake_macros.h" ]; then
  mkdir -p "$tmp/stub/c10/cuda/impl"
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$tmp/stub/c10/cuda/impl/cuda_cmake_macros.h"
fi
status=0
for f in csrc/cuda/*.cu; do
  if nvcc -c -std=c++20 -O2 --fmad=false -gencode "arch=compute_${arch},code=sm_${arch}" -Xcompiler -fPIC \
      -I csrc -isystem "$tmp/stub" -isystem "$inc" -isystem "$inc/torch/csrc/api/include" \
      "$f" -o "$tmp/$(basename "$f").o"; then
    echo "ok      $f (sm_${arch})"
  else
    echo "FAILED  $f"; status=1
  fi
done
exit $status

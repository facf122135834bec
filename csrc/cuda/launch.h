// Small helpers shared by the CUDA kernel files.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

namespace pyfdc {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t work, int threads = kThreads) {
  return static_cast<unsigned>(std::clamp<int64_t>((work + threads - 1) / threads, 1, int64_t{1} << 20));
}

}  // namespace pyfdc

// error_feedback on CUDA: one block per sample; threads stride over its (row, feature) pairs,
// apply Eq. (14) to valid rows and reduce ||fresh - cached||^2 (warp shuffles, then shared memory)
// in a fixed order, so results are deterministic for a given launch shape.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "checks.h"
#include "cuda/launch.h"
#include "e2crf_math.h"

namespace pyfdc {
namespace {

struct EfStrides {
  int64_t c[3], f[3], i[2], a, e;
};

template <typename scalar_t>
__global__ void error_feedback_kernel(scalar_t* __restrict__ crf, const scalar_t* __restrict__ fresh,
                                      const int64_t* __restrict__ idx, const scalar_t* __restrict__ alpha,
                                      scalar_t* __restrict__ err, EfStrides st, int64_t T, int64_t D, int64_t S) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t partial[kThreads / 32];
  const int64_t b = blockIdx.x;
  const acc_t a = static_cast<acc_t>(alpha[b * st.a]);
  acc_t err_sq = 0;
  for (int64_t i = threadIdx.x; i < S * D; i += blockDim.x) {
    const int64_t s = i / D, e = i % D;
    const int64_t j = idx[b * st.i[0] + s * st.i[1]];
    if (j < 0 || j >= T) continue;  // padding (or out of range: skipped on CUDA)
    scalar_t* cell = crf + b * st.c[0] + j * st.c[1] + e * st.c[2];
    const scalar_t old = *cell;
    const acc_t diff = static_cast<acc_t>(fresh[b * st.f[0] + s * st.f[1] + e * st.f[2]]) - static_cast<acc_t>(old);
    err_sq += diff * diff;
    *cell = ef_update(old, diff, a);
  }
  for (int off = 16; off > 0; off >>= 1) err_sq += __shfl_down_sync(0xffffffffu, err_sq, off);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = err_sq;
  __syncthreads();
  if (threadIdx.x == 0) {
    acc_t total = 0;
    for (int w = 0; w < kThreads / 32; ++w) total += partial[w];
    err[b * st.e] = static_cast<scalar_t>(root(total));
  }
}

void error_feedback_cuda(at::Tensor& crf, const at::Tensor& fresh, const at::Tensor& idx, const at::Tensor& alpha,
                         at::Tensor& err_out) {
  const EfDims d = check_error_feedback(crf, fresh, idx, alpha, err_out);
  if (d.B == 0) return;
  EfStrides st{};
  for (int i = 0; i < 3; ++i) st.c[i] = crf.stride(i), st.f[i] = fresh.stride(i);
  for (int i = 0; i < 2; ++i) st.i[i] = idx.stride(i);
  st.a = alpha.stride(0);
  st.e = err_out.stride(0);
  const c10::cuda::OptionalCUDAGuard guard(crf.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, crf.scalar_type(), "error_feedback_cuda", [&] {
    error_feedback_kernel<scalar_t><<<static_cast<unsigned>(d.B), kThreads, 0, stream>>>(
        crf.mutable_data_ptr<scalar_t>(), fresh.const_data_ptr<scalar_t>(), idx.const_data_ptr<int64_t>(),
        alpha.const_data_ptr<scalar_t>(), err_out.mutable_data_ptr<scalar_t>(), st, d.T, d.D, d.S);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace pyfdc

TORCH_LIBRARY_IMPL(pyfdc, CUDA, m) { m.impl("error_feedback", &pyfdc::error_feedback_cuda); }

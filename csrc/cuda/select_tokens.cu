// select_tokens on CUDA: one warp per sample walks its tokens 32 at a time; each lane evaluates
// one token (Eq. 13 via e2crf_math.h), and a ballot + popcount compacts the selected tokens in
// ascending order. One pass, no scratch memory, deterministic.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "checks.h"
#include "cuda/launch.h"
#include "e2crf_math.h"

namespace pyfdc {
namespace {

constexpr int kWarpsPerBlock = 4;

struct SelectStrides {
  int64_t z[3], r[3], p[2], f, i[2], c;
};

template <typename scalar_t>
__global__ void select_tokens_kernel(const scalar_t* __restrict__ z, const scalar_t* __restrict__ zr,
                                     const bool* __restrict__ probe, const bool* __restrict__ force,
                                     int64_t* __restrict__ idx, int64_t* __restrict__ count, SelectStrides st,
                                     int64_t B, int64_t T, int64_t C, int64_t K,
                                     at::opmath_type<scalar_t> tau0, at::opmath_type<scalar_t> eps,
                                     bool energy_weighted) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x & 31;
  const int64_t b = int64_t(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (b >= B) return;  // uniform per warp
  const bool forced = force[b * st.f];
  int64_t n = 0;
  for (int64_t t0 = 0; t0 < T; t0 += 32) {
    const int64_t t = t0 + lane;
    bool sel = false;
    if (t < T) {
      sel = forced || t <= K || probe[b * st.p[0] + t * st.p[1]];
      if (!sel) {
        acc_t drift_sq, energy;
        token_drift(z + b * st.z[0] + t * st.z[1], zr + b * st.r[0] + t * st.r[1], C, st.z[2], st.r[2], drift_sq, energy);
        sel = drifted(drift_sq, threshold(tau0, eps, energy, energy_weighted));
      }
    }
    const unsigned ballot = __ballot_sync(0xffffffffu, sel);
    if (sel) idx[b * st.i[0] + (n + __popc(ballot & ((1u << lane) - 1u))) * st.i[1]] = t;
    n += __popc(ballot);
  }
  for (int64_t k = n + lane; k < T; k += 32) idx[b * st.i[0] + k * st.i[1]] = -1;
  if (lane == 0) count[b * st.c] = n;
}

void select_tokens_cuda(const at::Tensor& z, const at::Tensor& z_ref, const at::Tensor& probe_mask,
                        const at::Tensor& force, int64_t K, double tau0, double eps, bool energy_weighted,
                        at::Tensor& idx_out, at::Tensor& count_out) {
  const SelectDims d = check_select_tokens(z, z_ref, probe_mask, force, K, tau0, eps, idx_out, count_out);
  if (d.B == 0) return;
  SelectStrides st{};
  for (int i = 0; i < 3; ++i) st.z[i] = z.stride(i), st.r[i] = z_ref.stride(i);
  for (int i = 0; i < 2; ++i) st.p[i] = probe_mask.stride(i), st.i[i] = idx_out.stride(i);
  st.f = force.stride(0);
  st.c = count_out.stride(0);
  const c10::cuda::OptionalCUDAGuard guard(z.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const unsigned blocks = static_cast<unsigned>((d.B + kWarpsPerBlock - 1) / kWarpsPerBlock);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "select_tokens_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    select_tokens_kernel<scalar_t><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(
        z.const_data_ptr<scalar_t>(), z_ref.const_data_ptr<scalar_t>(), probe_mask.const_data_ptr<bool>(),
        force.const_data_ptr<bool>(), idx_out.mutable_data_ptr<int64_t>(), count_out.mutable_data_ptr<int64_t>(), st,
        d.B, d.T, d.C, K, static_cast<acc_t>(tau0), static_cast<acc_t>(eps), energy_weighted);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace pyfdc

TORCH_LIBRARY_IMPL(pyfdc, CUDA, m) { m.impl("select_tokens", &pyfdc::select_tokens_cuda); }

// select_budget on CUDA: one block per sample. Drift scores go to shared memory; each token's rank
// among the sample's candidates is counted directly (O(N'^2 / threads) per sample, no sort, fully
// deterministic: ties go to the lower token), and tokens ranked below the free slots write
// themselves. Out-of-range probes are skipped here (the CPU kernel rejects them).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "checks.h"
#include "cuda/launch.h"
#include "e2crf_math.h"

namespace pyfdc {
namespace {

constexpr int kBudgetThreads = 128;

struct BudgetStrides {
  int64_t z[3], r[3], p[2], i[2], o;
};

template <typename scalar_t>
__global__ void select_budget_kernel(const scalar_t* __restrict__ z, const scalar_t* __restrict__ zr,
                                     const int64_t* __restrict__ probes, int64_t* __restrict__ idx,
                                     int64_t* __restrict__ overflow, BudgetStrides st, int64_t T, int64_t C,
                                     int64_t P, int64_t k, int64_t K, at::opmath_type<scalar_t> tau0,
                                     at::opmath_type<scalar_t> eps, bool energy_weighted) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(8) unsigned char smem[];
  acc_t* key = reinterpret_cast<acc_t*>(smem);
  unsigned char* taken = smem + sizeof(acc_t) * T;
  __shared__ unsigned long long drifting;
  const int64_t b = blockIdx.x;
  const int64_t fill = k - K - 1 - P;
  if (threadIdx.x == 0) drifting = 0;
  for (int64_t t = threadIdx.x; t < T; t += blockDim.x) {
    taken[t] = t <= K;
    if (t <= K) idx[b * st.i[0] + t * st.i[1]] = t;
  }
  __syncthreads();
  for (int64_t s = threadIdx.x; s < P; s += blockDim.x) {
    const int64_t j = probes[b * st.p[0] + s * st.p[1]];
    if (j > K && j < T) taken[j] = 1;
    idx[b * st.i[0] + (K + 1 + s) * st.i[1]] = j;
  }
  __syncthreads();
  unsigned long long mine = 0;
  for (int64_t t = threadIdx.x; t < T; t += blockDim.x) {
    if (taken[t]) continue;
    acc_t drift_sq, energy;
    token_drift(z + b * st.z[0] + t * st.z[1], zr + b * st.r[0] + t * st.r[1], C, st.z[2], st.r[2], drift_sq, energy);
    mine += drifted(drift_sq, threshold(tau0, eps, energy, energy_weighted));
    key[t] = drift_score(drift_sq, eps, energy, energy_weighted);
  }
  if (mine) atomicAdd(&drifting, mine);
  __syncthreads();
  for (int64_t t = threadIdx.x; t < T; t += blockDim.x) {
    if (taken[t]) continue;
    const acc_t kt = key[t];
    int64_t rank = 0;
    for (int64_t u = K + 1; u < T && rank < fill; ++u)
      rank += !taken[u] && (key[u] > kt || (key[u] == kt && u < t));
    if (rank < fill) idx[b * st.i[0] + (K + 1 + P + rank) * st.i[1]] = t;
  }
  if (threadIdx.x == 0) {
    const int64_t over = static_cast<int64_t>(drifting) - fill;
    if (over > 0) overflow[b * st.o] += over;
  }
}

void select_budget_cuda(const at::Tensor& z, const at::Tensor& z_ref, const at::Tensor& probes, int64_t K,
                        double tau0, double eps, bool energy_weighted, at::Tensor& idx_out, at::Tensor& overflow_out) {
  const BudgetDims d = check_select_budget(z, z_ref, probes, K, tau0, eps, idx_out, overflow_out);
  if (d.B == 0) return;
  BudgetStrides st{};
  for (int i = 0; i < 3; ++i) st.z[i] = z.stride(i), st.r[i] = z_ref.stride(i);
  for (int i = 0; i < 2; ++i) st.p[i] = probes.stride(i), st.i[i] = idx_out.stride(i);
  st.o = overflow_out.stride(0);
  const c10::cuda::OptionalCUDAGuard guard(z.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "select_budget_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const size_t shared = (sizeof(acc_t) + 1) * static_cast<size_t>(d.T);
    TORCH_CHECK_VALUE(shared <= 48 * 1024, "select_budget: N' = ", d.T, " tokens need ", shared,
                      " bytes of shared memory per sample, more than the 48 KiB a CUDA block gets by default");
    select_budget_kernel<scalar_t><<<static_cast<unsigned>(d.B), kBudgetThreads, shared, stream>>>(
        z.const_data_ptr<scalar_t>(), z_ref.const_data_ptr<scalar_t>(), probes.const_data_ptr<int64_t>(),
        idx_out.mutable_data_ptr<int64_t>(), overflow_out.mutable_data_ptr<int64_t>(), st, d.T, d.C, d.P, d.k, K,
        static_cast<acc_t>(tau0), static_cast<acc_t>(eps), energy_weighted);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace pyfdc

TORCH_LIBRARY_IMPL(pyfdc, CUDA, m) { m.impl("select_budget", &pyfdc::select_budget_cuda); }

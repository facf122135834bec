// kv_scatter on CUDA: one thread per copied element (b, s, h, e); padded or out-of-range index
// entries are skipped (the range check that raises is CPU-only: it would need a host sync here).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "checks.h"
#include "cuda/launch.h"

namespace pyfdc {
namespace {

struct KvStrides {
  int64_t c[5];  // cache (L, B, H, N', dh)
  int64_t r[4];  // rows (B, H, k, dh)
};

template <typename scalar_t>
__global__ void kv_scatter_kernel(scalar_t* __restrict__ kc, scalar_t* __restrict__ vc,
                                  const scalar_t* __restrict__ kn, const scalar_t* __restrict__ vn,
                                  const int64_t* __restrict__ idx, int64_t is0, int64_t is1, KvStrides ks,
                                  KvStrides vs, int64_t layer, int64_t H, int64_t T, int64_t S, int64_t dh,
                                  int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = i % dh;
    int64_t r = i / dh;
    const int64_t h = r % H;
    r /= H;
    const int64_t s = r % S, b = r / S;
    const int64_t j = idx[b * is0 + s * is1];
    if (j < 0 || j >= T) continue;
    kc[layer * ks.c[0] + b * ks.c[1] + h * ks.c[2] + j * ks.c[3] + e * ks.c[4]] =
        kn[b * ks.r[0] + h * ks.r[1] + s * ks.r[2] + e * ks.r[3]];
    vc[layer * vs.c[0] + b * vs.c[1] + h * vs.c[2] + j * vs.c[3] + e * vs.c[4]] =
        vn[b * vs.r[0] + h * vs.r[1] + s * vs.r[2] + e * vs.r[3]];
  }
}

KvStrides strides_of(const at::Tensor& cache, const at::Tensor& rows) {
  KvStrides st{};
  for (int i = 0; i < 5; ++i) st.c[i] = cache.stride(i);
  for (int i = 0; i < 4; ++i) st.r[i] = rows.stride(i);
  return st;
}

void kv_scatter_cuda(at::Tensor& k_cache, at::Tensor& v_cache, int64_t layer, const at::Tensor& idx,
                     const at::Tensor& k_new, const at::Tensor& v_new) {
  const KvDims d = check_kv_scatter(k_cache, v_cache, layer, idx, k_new, v_new);
  const int64_t total = d.B * d.S * d.H * d.dh;
  if (total == 0) return;
  const c10::cuda::OptionalCUDAGuard guard(k_cache.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, k_cache.scalar_type(), "kv_scatter_cuda", [&] {
    kv_scatter_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        k_cache.mutable_data_ptr<scalar_t>(), v_cache.mutable_data_ptr<scalar_t>(), k_new.const_data_ptr<scalar_t>(),
        v_new.const_data_ptr<scalar_t>(), idx.const_data_ptr<int64_t>(), idx.stride(0), idx.stride(1),
        strides_of(k_cache, k_new), strides_of(v_cache, v_new), layer, d.H, d.T, d.S, d.dh, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace pyfdc

TORCH_LIBRARY_IMPL(pyfdc, CUDA, m) { m.impl("kv_scatter", &pyfdc::kv_scatter_cuda); }

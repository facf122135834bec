// kv_scatter on the CPU: k_cache[layer, b, :, idx[b, s], :] = k_new[b, :, s, :] (same for v).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>

#include "checks.h"

namespace pyfdc {
namespace {

template <typename scalar_t>
void scatter_rows(const at::Tensor& cache, int64_t layer, const at::Tensor& idx, const at::Tensor& rows,
                  const KvDims& d) {
  scalar_t* out = cache.mutable_data_ptr<scalar_t>();
  const scalar_t* in = rows.const_data_ptr<scalar_t>();
  const int64_t* ip = idx.const_data_ptr<int64_t>();
  const auto cs = cache.strides();
  const auto rs = rows.strides();
  const int64_t is0 = idx.stride(0), is1 = idx.stride(1);
  const bool unit_stride = cs[4] == 1 && rs[3] == 1;
  const int64_t grain = std::max<int64_t>(1, kCpuGrain / std::max<int64_t>(1, d.S * d.dh));
  at::parallel_for(0, d.B * d.H, grain, [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / d.H, h = bh % d.H;
      for (int64_t s = 0; s < d.S; ++s) {
        const int64_t j = ip[b * is0 + s * is1];
        if (j < 0) continue;  // padding
        scalar_t* dst = out + layer * cs[0] + b * cs[1] + h * cs[2] + j * cs[3];
        const scalar_t* src = in + b * rs[0] + h * rs[1] + s * rs[2];
        if (unit_stride) {
          for (int64_t e = 0; e < d.dh; ++e) dst[e] = src[e];
        } else {
          for (int64_t e = 0; e < d.dh; ++e) dst[e * cs[4]] = src[e * rs[3]];
        }
      }
    }
  });
}

void kv_scatter_cpu(at::Tensor& k_cache, at::Tensor& v_cache, int64_t layer, const at::Tensor& idx,
                    const at::Tensor& k_new, const at::Tensor& v_new) {
  const KvDims d = check_kv_scatter(k_cache, v_cache, layer, idx, k_new, v_new);
  check_index_range("kv_scatter", idx, d.T);  // before any write: bad input leaves the cache as it was
  if (d.B == 0 || d.S == 0 || d.H == 0 || d.dh == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, k_cache.scalar_type(), "kv_scatter_cpu", [&] {
    scatter_rows<scalar_t>(k_cache, layer, idx, k_new, d);
    scatter_rows<scalar_t>(v_cache, layer, idx, v_new, d);
  });
}

}  // namespace
}  // namespace pyfdc

TORCH_LIBRARY_IMPL(pyfdc, CPU, m) { m.impl("kv_scatter", &pyfdc::kv_scatter_cpu); }

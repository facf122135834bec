// error_feedback on the CPU: per sample, one pass over its valid index rows reads the cached row,
// accumulates ||fresh - cached||^2 and writes the corrected row (Eq. 14).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>

#include "checks.h"
#include "e2crf_math.h"

namespace pyfdc {
namespace {

template <typename scalar_t>
void ef_impl(const at::Tensor& crf, const at::Tensor& fresh, const at::Tensor& idx, const at::Tensor& alpha,
             const at::Tensor& err_out, const EfDims& d) {
  using acc_t = at::opmath_type<scalar_t>;
  scalar_t* cp = crf.mutable_data_ptr<scalar_t>();
  const scalar_t* fp = fresh.const_data_ptr<scalar_t>();
  const int64_t* ip = idx.const_data_ptr<int64_t>();
  const scalar_t* ap = alpha.const_data_ptr<scalar_t>();
  scalar_t* ep = err_out.mutable_data_ptr<scalar_t>();
  const auto cs = crf.strides(), fs = fresh.strides(), is = idx.strides();
  const int64_t as = alpha.stride(0), es = err_out.stride(0);
  const int64_t grain = std::max<int64_t>(1, kCpuGrain / std::max<int64_t>(1, d.S * d.D));
  at::parallel_for(0, d.B, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const acc_t a = static_cast<acc_t>(ap[b * as]);
      acc_t err_sq = 0;
      for (int64_t s = 0; s < d.S; ++s) {
        const int64_t j = ip[b * is[0] + s * is[1]];
        if (j < 0) continue;  // padding
        scalar_t* row = cp + b * cs[0] + j * cs[1];
        const scalar_t* src = fp + b * fs[0] + s * fs[1];
        for (int64_t e = 0; e < d.D; ++e) {
          const scalar_t old = row[e * cs[2]];
          const acc_t diff = static_cast<acc_t>(src[e * fs[2]]) - static_cast<acc_t>(old);
          err_sq += diff * diff;
          row[e * cs[2]] = ef_update(old, diff, a);
        }
      }
      ep[b * es] = static_cast<scalar_t>(root(err_sq));
    }
  });
}

void error_feedback_cpu(at::Tensor& crf, const at::Tensor& fresh, const at::Tensor& idx, const at::Tensor& alpha,
                        at::Tensor& err_out) {
  const EfDims d = check_error_feedback(crf, fresh, idx, alpha, err_out);
  check_index_range("error_feedback", idx, d.T);  // before any write: bad input leaves crf as it was
  if (d.B == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, crf.scalar_type(), "error_feedback_cpu", [&] {
    ef_impl<scalar_t>(crf, fresh, idx, alpha, err_out, d);
  });
}

}  // namespace
}  // namespace pyfdc

TORCH_LIBRARY_IMPL(pyfdc, CPU, m) { m.impl("error_feedback", &pyfdc::error_feedback_cpu); }

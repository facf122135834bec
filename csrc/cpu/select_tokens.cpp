// select_tokens on the CPU: one pass per sample computes the rules of Eq. (13) token by token and
// writes the selected tokens, ascending, to the front of the sample's row (rest -1).
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
void select_impl(const at::Tensor& z, const at::Tensor& z_ref, const at::Tensor& probe_mask, const at::Tensor& force,
                 int64_t K, double tau0_d, double eps_d, bool energy_weighted, const at::Tensor& idx_out,
                 const at::Tensor& count_out, const SelectDims& d) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t tau0 = static_cast<acc_t>(tau0_d), eps = static_cast<acc_t>(eps_d);
  const scalar_t* zp = z.const_data_ptr<scalar_t>();
  const scalar_t* rp = z_ref.const_data_ptr<scalar_t>();
  const bool* pp = probe_mask.const_data_ptr<bool>();
  const bool* fp = force.const_data_ptr<bool>();
  int64_t* ip = idx_out.mutable_data_ptr<int64_t>();
  int64_t* cp = count_out.mutable_data_ptr<int64_t>();
  const auto zs = z.strides(), rs = z_ref.strides(), ps = probe_mask.strides(), is = idx_out.strides();
  const int64_t fs = force.stride(0), cs = count_out.stride(0);
  const int64_t grain = std::max<int64_t>(1, kCpuGrain / std::max<int64_t>(1, d.T * d.C));
  at::parallel_for(0, d.B, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const bool forced = fp[b * fs];
      int64_t n = 0;
      for (int64_t t = 0; t < d.T; ++t) {
        // Branch-free: every token is evaluated and written at slot n (n <= t, so in bounds);
        // only selected tokens advance n, and the tail is overwritten with -1 below.
        const scalar_t* zt = zp + b * zs[0] + t * zs[1];
        const scalar_t* rt = rp + b * rs[0] + t * rs[1];
        acc_t drift_sq, energy;
        token_drift(zt, rt, d.C, zs[2], rs[2], drift_sq, energy);
        const bool sel = forced | (t <= K) | pp[b * ps[0] + t * ps[1]] |
                         drifted(drift_sq, threshold(tau0, eps, energy, energy_weighted));
        ip[b * is[0] + n * is[1]] = t;
        n += sel;
      }
      for (int64_t k = n; k < d.T; ++k) ip[b * is[0] + k * is[1]] = -1;
      cp[b * cs] = n;
    }
  });
}

void select_tokens_cpu(const at::Tensor& z, const at::Tensor& z_ref, const at::Tensor& probe_mask,
                       const at::Tensor& force, int64_t K, double tau0, double eps, bool energy_weighted,
                       at::Tensor& idx_out, at::Tensor& count_out) {
  const SelectDims d = check_select_tokens(z, z_ref, probe_mask, force, K, tau0, eps, idx_out, count_out);
  if (d.B == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "select_tokens_cpu", [&] {
    select_impl<scalar_t>(z, z_ref, probe_mask, force, K, tau0, eps, energy_weighted, idx_out, count_out, d);
  });
}

}  // namespace
}  // namespace pyfdc

TORCH_LIBRARY_IMPL(pyfdc, CPU, m) { m.impl("select_tokens", &pyfdc::select_tokens_cpu); }

// select_budget on the CPU: per sample, the band and the probes take the first K + 1 + P slots; the
// remaining tokens are ranked by drift score (partial sort) and the best fill the rest of the row.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "checks.h"
#include "e2crf_math.h"

namespace pyfdc {
namespace {

template <typename scalar_t>
void budget_impl(const at::Tensor& z, const at::Tensor& z_ref, const at::Tensor& probes, int64_t K, double tau0_d,
                 double eps_d, bool energy_weighted, const at::Tensor& idx_out, const at::Tensor& overflow_out,
                 const BudgetDims& d) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t tau0 = static_cast<acc_t>(tau0_d), eps = static_cast<acc_t>(eps_d);
  const scalar_t* zp = z.const_data_ptr<scalar_t>();
  const scalar_t* rp = z_ref.const_data_ptr<scalar_t>();
  const int64_t* pp = probes.const_data_ptr<int64_t>();
  int64_t* ip = idx_out.mutable_data_ptr<int64_t>();
  int64_t* op = overflow_out.mutable_data_ptr<int64_t>();
  const auto zs = z.strides(), rs = z_ref.strides(), ps = probes.strides(), is = idx_out.strides();
  const int64_t os = overflow_out.stride(0);
  const int64_t fill = d.k - K - 1 - d.P;  // slots left for the drift ranking
  const int64_t grain = std::max<int64_t>(1, kCpuGrain / std::max<int64_t>(1, d.T * d.C));
  at::parallel_for(0, d.B, grain, [&](int64_t begin, int64_t end) {
    std::vector<char> taken(d.T);
    std::vector<std::pair<acc_t, int64_t>> cand;
    cand.reserve(d.T);
    for (int64_t b = begin; b < end; ++b) {
      std::fill(taken.begin(), taken.end(), 0);
      for (int64_t t = 0; t <= K; ++t) {
        taken[t] = 1;
        ip[b * is[0] + t * is[1]] = t;
      }
      for (int64_t s = 0; s < d.P; ++s) {
        const int64_t j = pp[b * ps[0] + s * ps[1]];
        taken[j] = 1;
        ip[b * is[0] + (K + 1 + s) * is[1]] = j;
      }
      cand.clear();
      int64_t drifting = 0;
      for (int64_t t = K + 1; t < d.T; ++t) {
        if (taken[t]) continue;
        const scalar_t* zt = zp + b * zs[0] + t * zs[1];
        const scalar_t* rt = rp + b * rs[0] + t * rs[1];
        acc_t drift_sq, energy;
        token_drift(zt, rt, d.C, zs[2], rs[2], drift_sq, energy);
        drifting += drifted(drift_sq, threshold(tau0, eps, energy, energy_weighted));
        cand.emplace_back(drift_score(drift_sq, eps, energy, energy_weighted), t);
      }
      std::partial_sort(cand.begin(), cand.begin() + fill, cand.end(),
                        [](const auto& a, const auto& c) { return a.first > c.first || (a.first == c.first && a.second < c.second); });
      for (int64_t i = 0; i < fill; ++i) ip[b * is[0] + (K + 1 + d.P + i) * is[1]] = cand[i].second;
      op[b * os] += std::max<int64_t>(0, drifting - fill);
    }
  });
}

void select_budget_cpu(const at::Tensor& z, const at::Tensor& z_ref, const at::Tensor& probes, int64_t K,
                       double tau0, double eps, bool energy_weighted, at::Tensor& idx_out, at::Tensor& overflow_out) {
  const BudgetDims d = check_select_budget(z, z_ref, probes, K, tau0, eps, idx_out, overflow_out);
  check_probe_rows("select_budget", probes, K, d.T);
  if (d.B == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "select_budget_cpu", [&] {
    budget_impl<scalar_t>(z, z_ref, probes, K, tau0, eps, energy_weighted, idx_out, overflow_out, d);
  });
}

}  // namespace
}  // namespace pyfdc

TORCH_LIBRARY_IMPL(pyfdc, CPU, m) { m.impl("select_budget", &pyfdc::select_budget_cpu); }

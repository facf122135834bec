// Argument checks shared by the CPU and CUDA kernels of every op. Messages name the op, the
// argument and the expected shape/dtype/device; pyfdc/ops/_checks.py words them identically for
// the reference twins and the fake kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace pyfdc {

// Elements per CPU task below which at::parallel_for stays on one thread (at::internal::GRAIN_SIZE).
constexpr int64_t kCpuGrain = 32768;

inline std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return c10::toString(t);
  }
}

inline std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

inline void check_floating(const char* op, const char* arg, const at::Tensor& t) {
  const auto s = t.scalar_type();
  TORCH_CHECK_VALUE(s == at::kHalf || s == at::kBFloat16 || s == at::kFloat || s == at::kDouble,
                    op, ": ", arg, " must have a floating dtype (float16, bfloat16, float32, float64), got ",
                    dtype_name(s));
}

inline void check_dtype(const char* op, const char* arg, const at::Tensor& t, at::ScalarType want,
                        const char* like = nullptr) {
  TORCH_CHECK_VALUE(t.scalar_type() == want, op, ": ", arg, " must have dtype ", dtype_name(want),
                    like ? std::string(" like ") + like : std::string(), ", got ", dtype_name(t.scalar_type()));
}

inline void check_device(const char* op, const char* arg, const at::Tensor& t, const at::Tensor& ref,
                         const char* ref_name) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), op, ": ", arg, " must be on the device of ", ref_name, " (",
                    ref.device().str(), "), got ", t.device().str());
}

inline void check_rank(const char* op, const char* arg, const at::Tensor& t, int64_t rank, const char* spec) {
  TORCH_CHECK_VALUE(t.dim() == rank, op, ": ", arg, " must have shape ", spec, " (", rank, " dims), got ",
                    shape_str(t.sizes()));
}

inline void check_shape(const char* op, const char* arg, const at::Tensor& t, const char* spec,
                        std::initializer_list<int64_t> want) {
  bool ok = t.dim() == static_cast<int64_t>(want.size());
  for (size_t i = 0; ok && i < want.size(); ++i) ok = t.size(static_cast<int64_t>(i)) == want.begin()[i];
  TORCH_CHECK_VALUE(ok, op, ": ", arg, " must have shape ", spec, " = ",
                    shape_str(at::IntArrayRef(want.begin(), want.size())), ", got ", shape_str(t.sizes()));
}

// Index rows (B, k): each entry is -1 (padding) or a token 0 <= j < N'. Checked on the CPU only
// (a device-side check would need a host sync per call); CUDA kernels skip out-of-range entries.
inline void check_index_range(const char* op, const at::Tensor& idx, int64_t num_tokens) {
  const int64_t* p = idx.const_data_ptr<int64_t>();
  const int64_t s0 = idx.stride(0), s1 = idx.stride(1);
  for (int64_t b = 0; b < idx.size(0); ++b) {
    for (int64_t s = 0; s < idx.size(1); ++s) {
      const int64_t j = p[b * s0 + s * s1];
      TORCH_CHECK_VALUE(j >= -1 && j < num_tokens, op, ": idx[", b, ", ", s, "] = ", j,
                        " is out of range: entries must be -1 (padding) or 0 <= j < N' = ", num_tokens);
    }
  }
}

struct KvDims { int64_t L, B, H, T, dh, S; };

inline KvDims check_kv_scatter(const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t layer,
                               const at::Tensor& idx, const at::Tensor& k_new, const at::Tensor& v_new) {
  constexpr const char* op = "kv_scatter";
  check_floating(op, "k_cache", k_cache);
  check_rank(op, "k_cache", k_cache, 5, "(L, B, H, N', dh)");
  check_device(op, "v_cache", v_cache, k_cache, "k_cache");
  check_device(op, "idx", idx, k_cache, "k_cache");
  check_device(op, "k_new", k_new, k_cache, "k_cache");
  check_device(op, "v_new", v_new, k_cache, "k_cache");
  check_dtype(op, "v_cache", v_cache, k_cache.scalar_type(), "k_cache");
  check_dtype(op, "idx", idx, at::kLong);
  check_dtype(op, "k_new", k_new, k_cache.scalar_type(), "k_cache");
  check_dtype(op, "v_new", v_new, k_cache.scalar_type(), "k_cache");
  const KvDims d{k_cache.size(0), k_cache.size(1), k_cache.size(2), k_cache.size(3), k_cache.size(4),
                 idx.dim() == 2 ? idx.size(1) : 0};
  check_shape(op, "v_cache", v_cache, "(L, B, H, N', dh)", {d.L, d.B, d.H, d.T, d.dh});
  TORCH_CHECK_VALUE(layer >= 0 && layer < d.L, op, ": layer must be in [0, L) = [0, ", d.L, "), got ", layer);
  check_rank(op, "idx", idx, 2, "(B, k)");
  check_shape(op, "idx", idx, "(B, k)", {d.B, d.S});
  check_shape(op, "k_new", k_new, "(B, H, k, dh)", {d.B, d.H, d.S, d.dh});
  check_shape(op, "v_new", v_new, "(B, H, k, dh)", {d.B, d.H, d.S, d.dh});
  return d;
}

struct SelectDims { int64_t B, T, C; };

inline SelectDims check_select_tokens(const at::Tensor& z, const at::Tensor& z_ref, const at::Tensor& probe_mask,
                                      const at::Tensor& force, int64_t K, double tau0, double eps,
                                      const at::Tensor& idx_out, const at::Tensor& count_out) {
  constexpr const char* op = "select_tokens";
  check_floating(op, "z", z);
  check_rank(op, "z", z, 3, "(B, N', 2M)");
  check_device(op, "z_ref", z_ref, z, "z");
  check_device(op, "probe_mask", probe_mask, z, "z");
  check_device(op, "force", force, z, "z");
  check_device(op, "idx_out", idx_out, z, "z");
  check_device(op, "count_out", count_out, z, "z");
  check_dtype(op, "z_ref", z_ref, z.scalar_type(), "z");
  check_dtype(op, "probe_mask", probe_mask, at::kBool);
  check_dtype(op, "force", force, at::kBool);
  check_dtype(op, "idx_out", idx_out, at::kLong);
  check_dtype(op, "count_out", count_out, at::kLong);
  const SelectDims d{z.size(0), z.size(1), z.size(2)};
  check_shape(op, "z_ref", z_ref, "(B, N', 2M)", {d.B, d.T, d.C});
  check_shape(op, "probe_mask", probe_mask, "(B, N')", {d.B, d.T});
  check_shape(op, "force", force, "(B,)", {d.B});
  check_shape(op, "idx_out", idx_out, "(B, N')", {d.B, d.T});
  check_shape(op, "count_out", count_out, "(B,)", {d.B});
  TORCH_CHECK_VALUE(K >= 0, op, ": K must be >= 0, got ", K);
  TORCH_CHECK_VALUE(!std::isnan(tau0) && tau0 >= 0, op, ": tau0 must be >= 0 and not NaN, got ", tau0);
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps >= 0, op, ": eps must be finite and >= 0, got ", eps);
  return d;
}

struct BudgetDims { int64_t B, T, C, P, k; };

inline BudgetDims check_select_budget(const at::Tensor& z, const at::Tensor& z_ref, const at::Tensor& probes,
                                      int64_t K, double tau0, double eps, const at::Tensor& idx_out,
                                      const at::Tensor& overflow_out) {
  constexpr const char* op = "select_budget";
  check_floating(op, "z", z);
  check_rank(op, "z", z, 3, "(B, N', 2M)");
  check_device(op, "z_ref", z_ref, z, "z");
  check_device(op, "probes", probes, z, "z");
  check_device(op, "idx_out", idx_out, z, "z");
  check_device(op, "overflow_out", overflow_out, z, "z");
  check_dtype(op, "z_ref", z_ref, z.scalar_type(), "z");
  check_dtype(op, "probes", probes, at::kLong);
  check_dtype(op, "idx_out", idx_out, at::kLong);
  check_dtype(op, "overflow_out", overflow_out, at::kLong);
  check_rank(op, "probes", probes, 2, "(B, P)");
  check_rank(op, "idx_out", idx_out, 2, "(B, k)");
  const BudgetDims d{z.size(0), z.size(1), z.size(2), probes.size(1), idx_out.size(1)};
  check_shape(op, "z_ref", z_ref, "(B, N', 2M)", {d.B, d.T, d.C});
  check_shape(op, "probes", probes, "(B, P)", {d.B, d.P});
  check_shape(op, "idx_out", idx_out, "(B, k)", {d.B, d.k});
  check_shape(op, "overflow_out", overflow_out, "(B,)", {d.B});
  TORCH_CHECK_VALUE(K >= 0, op, ": K must be >= 0, got ", K);
  TORCH_CHECK_VALUE(K + 1 + d.P <= d.k && d.k <= d.T, op, ": the budget k = ", d.k,
                    " must hold the band 0..K and the probes (K + 1 + P = ", K + 1 + d.P,
                    ") and be at most N' = ", d.T);
  TORCH_CHECK_VALUE(!std::isnan(tau0) && tau0 >= 0, op, ": tau0 must be >= 0 and not NaN, got ", tau0);
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps >= 0, op, ": eps must be finite and >= 0, got ", eps);
  return d;
}

// Probe rows (B, P): distinct tokens outside the band, K < j < N'. CPU only, like check_index_range.
inline void check_probe_rows(const char* op, const at::Tensor& probes, int64_t K, int64_t num_tokens) {
  const int64_t* p = probes.const_data_ptr<int64_t>();
  const int64_t s0 = probes.stride(0), s1 = probes.stride(1);
  for (int64_t b = 0; b < probes.size(0); ++b) {
    for (int64_t s = 0; s < probes.size(1); ++s) {
      const int64_t j = p[b * s0 + s * s1];
      TORCH_CHECK_VALUE(j > K && j < num_tokens, op, ": probes[", b, ", ", s, "] = ", j,
                        " is out of range: probes must lie outside the band, K = ", K, " < j < N' = ", num_tokens);
      for (int64_t u = 0; u < s; ++u)
        TORCH_CHECK_VALUE(p[b * s0 + u * s1] != j, op, ": probes[", b, "] repeats token ", j,
                          ": a sample's probes must be distinct");
    }
  }
}

struct EfDims { int64_t B, T, D, S; };

inline EfDims check_error_feedback(const at::Tensor& crf, const at::Tensor& fresh, const at::Tensor& idx,
                                   const at::Tensor& alpha, const at::Tensor& err_out) {
  constexpr const char* op = "error_feedback";
  check_floating(op, "crf", crf);
  check_rank(op, "crf", crf, 3, "(B, N', d)");
  check_device(op, "fresh", fresh, crf, "crf");
  check_device(op, "idx", idx, crf, "crf");
  check_device(op, "alpha", alpha, crf, "crf");
  check_device(op, "err_out", err_out, crf, "crf");
  check_dtype(op, "fresh", fresh, crf.scalar_type(), "crf");
  check_dtype(op, "idx", idx, at::kLong);
  check_dtype(op, "alpha", alpha, crf.scalar_type(), "crf");
  check_dtype(op, "err_out", err_out, crf.scalar_type(), "crf");
  check_rank(op, "idx", idx, 2, "(B, k)");
  const EfDims d{crf.size(0), crf.size(1), crf.size(2), idx.size(1)};
  check_shape(op, "idx", idx, "(B, k)", {d.B, d.S});
  check_shape(op, "fresh", fresh, "(B, k, d)", {d.B, d.S, d.D});
  check_shape(op, "alpha", alpha, "(B,)", {d.B});
  check_shape(op, "err_out", err_out, "(B,)", {d.B});
  return d;
}

}  // namespace pyfdc

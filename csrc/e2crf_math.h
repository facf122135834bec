// Per-element E2-CRF math shared by the CPU loops and the CUDA threads, so both compute the same
// thing in the same order. acc_t is at::opmath_type<scalar_t>: float for half/bfloat16/float,
// double for double (the reference twins use the same promotion).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define PYFDC_HD __host__ __device__ __forceinline__
#else
#define PYFDC_HD inline
#endif

namespace pyfdc {

PYFDC_HD float root(float x) { return sqrtf(x); }
PYFDC_HD double root(double x) { return sqrt(x); }

// Energy-weighted threshold (App. A.6.2): tau_k = tau0 / (eps + E_k), E_k = ||z_k||^2.
// Without energy weighting the threshold is tau0 for every token.
template <typename acc_t>
PYFDC_HD acc_t threshold(acc_t tau0, acc_t eps, acc_t energy, bool energy_weighted) {
  return energy_weighted ? tau0 / (eps + energy) : tau0;
}

// Squared drift ||z_k - z_ref,k||^2 and energy E_k = ||z_k||^2 of one token, summed in acc_t over its
// C coordinates (element strides zc, rc) in one fixed order, shared by every selection kernel.
template <typename scalar_t, typename acc_t>
PYFDC_HD void token_drift(const scalar_t* zt, const scalar_t* rt, int64_t C, int64_t zc, int64_t rc, acc_t& drift_sq,
                          acc_t& energy) {
  drift_sq = 0;
  energy = 0;
  for (int64_t c = 0; c < C; ++c) {
    const acc_t zv = static_cast<acc_t>(zt[c * zc]);
    const acc_t diff = zv - static_cast<acc_t>(rt[c * rc]);
    drift_sq += diff * diff;
    energy += zv * zv;
  }
}

// High-change rule of Eq. (13): delta_k = ||z_k - z_ref,k||_2 > tau_k.
template <typename acc_t>
PYFDC_HD bool drifted(acc_t drift_sq, acc_t tau) {
  return root(drift_sq) > tau;
}

// Budget ranking key: delta_k / tau_k up to the positive factor 1 / tau0, i.e. delta_k (eps + E_k)
// (energy weighted) or delta_k, so the ranking is defined for tau0 = 0 too. NaN ranks first (+inf):
// a token whose drift cannot be measured is recomputed.
template <typename acc_t>
PYFDC_HD acc_t drift_score(acc_t drift_sq, acc_t eps, acc_t energy, bool energy_weighted) {
  const acc_t s = energy_weighted ? root(drift_sq) * (eps + energy) : root(drift_sq);
  return s != s ? static_cast<acc_t>(INFINITY) : s;
}

// Error-feedback correction, Eq. (14): c_hat <- c_hat + alpha (c - c_hat), with diff = c - c_hat
// in acc_t. The correction alpha*diff is rounded to the cache's dtype before it is added (what an
// in-place add of a correction tensor does; exact same result as single rounding for fp32/fp64).
template <typename scalar_t, typename acc_t>
PYFDC_HD scalar_t ef_update(scalar_t cached, acc_t diff, acc_t alpha) {
  const scalar_t correction = static_cast<scalar_t>(alpha * diff);
  return static_cast<scalar_t>(static_cast<acc_t>(cached) + static_cast<acc_t>(correction));
}

}  // namespace pyfdc

// pyfdc's compiled E2-CRF ops: the Python module init (empty: `import pyfdc._C` only loads the
// library) and every op's schema. Kernels: csrc/cpu/<op>.cpp and csrc/cuda/<op>.cu.
// Twins with the same names and semantics: pyfdc/ops/reference.py.
#include <Python.h>
#include <torch/library.h>

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "pyfdc's compiled E2-CRF ops (torch.ops.pyfdc)", -1,
                            nullptr};
  return PyModule_Create(&def);
}

TORCH_LIBRARY(pyfdc, m) {
  // Write fresh K/V rows into layer `layer` of the persistent cache (Alg. 1, lines 8-9).
  // k_cache, v_cache (L, B, H, N', dh); idx (B, k) int64, -1 = padding; k_new, v_new (B, H, k, dh).
  m.def("kv_scatter(Tensor(a!) k_cache, Tensor(b!) v_cache, int layer, Tensor idx, Tensor k_new, "
        "Tensor v_new) -> ()");
  // Recompute set of Eq. (13) with the energy-weighted threshold of App. A.6.2, compacted per sample.
  // z, z_ref (B, N', 2M); probe_mask (B, N') bool; force (B,) bool; idx_out (B, N'); count_out (B,).
  m.def("select_tokens(Tensor z, Tensor z_ref, Tensor probe_mask, Tensor force, int K, float tau0, "
        "float eps, bool energy_weighted, Tensor(a!) idx_out, Tensor(b!) count_out) -> ()");
  // Error-feedback correction of Eq. (14) on cached rows, plus per-sample error norms.
  // crf (B, N', d); fresh (B, k, d); idx (B, k) int64, -1 = padding; alpha (B,); err_out (B,).
  m.def("error_feedback(Tensor(a!) crf, Tensor fresh, Tensor idx, Tensor alpha, Tensor(b!) err_out) -> ()");
  // Static-shape recompute set: exactly k tokens per sample, laid out [band 0..K | probes | top drift
  // scores δ/τ, descending]; drift-rule tokens that did not fit are added to overflow_out.
  // z, z_ref (B, N', 2M); probes (B, P) int64 in (K, N'), distinct; idx_out (B, k); overflow_out (B,) int64.
  m.def("select_budget(Tensor z, Tensor z_ref, Tensor probes, int K, float tau0, float eps, "
        "bool energy_weighted, Tensor(a!) idx_out, Tensor(b!) overflow_out) -> ()");
}

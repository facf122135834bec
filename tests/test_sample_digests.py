"""Pins of sampler outputs: the same seed gives the same samples before and after a refactor.

Every uncached solver, every E2-CRF configuration the package offers (the budget step with each cached
output and ranking, the step feeding the deterministic solver) and the paper's literal algorithm (the
test-only reference ``paper_policy.py``) on the shipped ECG models, one thread, 4 series, 30 steps.

Two checks, because float32 kernels round differently on different CPUs (MKL and ATen pick code paths by
vendor and instruction set: the same code gave other bytes on an AMD EPYC than on the Intel machine the
digests were first recorded on):

* **bitwise**, where this kind of machine (:func:`machine_kind`) has a digest of the case recorded in
  ``data/sample_digests.json``: a change of any sample byte fails (re-recording on one machine drops the
  other machines' digests of the cases that changed);
* **everywhere**, against the reference samples ``data/sample_refs.npz`` to ``ATOL``: forcing this
  machine's ATen and MKL kernels to their AVX2 paths moves every case by at most 6e-7 (samples of scale
  ~1), while any change of the algorithm moves them by orders of magnitude more.

The ``freq/*`` digests were re-recorded when ``ecg_small_freq`` was retrained with the time-domain head
(issue 24). Regenerate only for an intended change of the numbers, and say so in the commit:

    python tests/test_sample_digests.py --write     # this machine's digests, and the reference samples
"""
from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from paper_policy import PaperConfig, PaperSampler
from pyfdc.e2crf import E2CRFConfig
from pyfdc.sampling.sampler import Sampler

DIGESTS = Path(__file__).with_name("data") / "sample_digests.json"
REFS = DIGESTS.with_name("sample_refs.npz")
ATOL = 1e-5   # ~20x the largest difference between kernel paths measured on one machine (see above)
NUM, STEPS, SEED = 4, 30, 3

CASES: dict[str, tuple[str, str, Any]] = {  # name -> (shipped model, solver, cache config)
    "freq/em": ("ecg_small_freq", "em", None),
    "freq/ddim": ("ecg_small_freq", "ddim", None),
    "freq/dpm2m": ("ecg_small_freq", "dpm2m", None),
    "freq/e2crf-paper": ("ecg_small_freq", "paper", PaperConfig()),
    "freq/e2crf-paper-tau0=1": ("ecg_small_freq", "paper", PaperConfig(tau0=1.0)),
    "freq/e2crf-budget0.35-features": ("ecg_small_freq", "em", E2CRFConfig(0.35, cached_output="features")),
    "freq/e2crf-budget0.35-gaussian": ("ecg_small_freq", "em", E2CRFConfig(0.35, cached_output="gaussian")),
    "freq/e2crf-budget0.7-gaussian": ("ecg_small_freq", "em", E2CRFConfig(0.7, cached_output="gaussian")),
    "freq/e2crf-budget0.5-energy": ("ecg_small_freq", "em", E2CRFConfig(0.5, ranking="energy", cached_output="features")),
    "freq/e2crf-budget0.5-dpm2m": ("ecg_small_freq", "dpm2m", E2CRFConfig(0.5, cached_output="features")),
    "time/em": ("ecg_small_time", "em", None),
    "time/e2crf-budget0.5-features": ("ecg_small_time", "em", E2CRFConfig(0.5)),
}


def _model(name: str) -> Any:
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.pretrained import pretrained_path

    return load_checkpoint(pretrained_path(name))


ISA_FLAGS = ("avx", "fma", "f16c", "amx", "vnni", "bf16", "fp16")   # cpuinfo flags that pick float kernels


def machine_kind() -> str:
    """``vendor/capability/cpu``: what decides which float kernels run (e.g. ``AuthenticAMD/AVX512/3f2a9c01``).

    ``cpu`` hashes the model name, the instruction-set flags (:data:`ISA_FLAGS`) and the cache size: two Intel
    AVX-512 machines gave other bytes for the time-domain model (MKL and oneDNN pick and block their float32
    kernels by what they find), so vendor and ATen capability alone do not name a kind. Flags that come and go
    with kernels and microcode (mitigations, virtualisation) are left out."""
    vendor, info = platform.processor() or platform.machine(), {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("vendor_id", "model name", "flags", "cache size") and key not in info:
                info[key] = value.strip()
            if len(info) == 4:
                break
    except OSError:
        pass
    vendor = info.get("vendor_id", vendor)
    info["flags"] = " ".join(sorted(f for f in info.get("flags", "").split() if f.startswith(ISA_FLAGS)))
    cpu = hashlib.sha256(repr(sorted(info.items())).encode()).hexdigest()[:8]
    return f"{vendor}/{torch.backends.cpu.get_cpu_capability()}/{cpu}"


def samples(case: str) -> np.ndarray:
    """The decoded float32 samples ``(NUM, N, M)`` of ``case`` (one torch thread)."""
    ckpt, sampler, cfg = CASES[case]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _model(ckpt)
        with torch.inference_mode():
            if sampler == "paper":
                x, _ = PaperSampler(model, cfg).sample(NUM, steps=STEPS, batch_size=NUM, seed=SEED, progress=False)
            else:
                x = Sampler(model, sampler, cache=cfg).sample(NUM, steps=STEPS, batch_size=NUM, seed=SEED,
                                                              progress=False)
    finally:
        torch.set_num_threads(threads)
    return x.detach().to(torch.float32).contiguous().numpy()


def digest(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()


def _recorded() -> dict[str, dict[str, str]]:
    return json.loads(DIGESTS.read_text())["by_machine"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_samples_are_pinned(case: str) -> None:
    x = samples(case)
    refs = np.load(REFS)
    assert case in refs.files, f"no reference samples for {case}: run python tests/test_sample_digests.py --write"
    ref = refs[case]
    assert x.shape == ref.shape and np.isfinite(x).all()
    gap = float(np.abs(x - ref).max())
    assert gap <= ATOL, f"{case}: samples changed by up to {gap:.3g} (an intended change re-records them)"
    mine = _recorded().get(machine_kind(), {})
    if case in mine:
        assert digest(x) == mine[case], f"{case}: sample bytes changed on {machine_kind()}"


def test_the_reference_samples_are_those_of_a_recorded_machine() -> None:
    """The references are not free to drift from the digests: each is bitwise one machine kind's samples."""
    refs, recorded = np.load(REFS), _recorded()
    for case in CASES:
        assert any(d.get(case) == digest(refs[case]) for d in recorded.values()), case


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_sample_digests.py --write")
    DIGESTS.parent.mkdir(exist_ok=True)
    got = {c: samples(c) for c in sorted(CASES)}
    data = json.loads(DIGESTS.read_text()) if DIGESTS.is_file() else {}
    by_machine = data.get("by_machine", {})
    before, now = by_machine.get(machine_kind(), {}), {c: digest(x) for c, x in got.items()}
    changed = {c for c in now if c in before and before[c] != now[c]}
    for kind, cases in by_machine.items():   # a change seen here makes other machines' digests of it stale
        by_machine[kind] = {c: d for c, d in cases.items() if c not in changed}
    by_machine[machine_kind()] = now
    DIGESTS.write_text(json.dumps({"by_machine": by_machine}, indent=1) + "\n")
    with open(REFS.with_suffix(".tmp.npz"), "wb") as f:
        np.savez_compressed(f, **got)
    REFS.with_suffix(".tmp.npz").replace(REFS)
    print(f"wrote {len(got)} digests for {machine_kind()} to {DIGESTS} and the reference samples to {REFS}")

"""Bitwise pins of sampler outputs: the same seed gives the same bytes before and after a refactor.

Every uncached solver, every E2-CRF configuration the package offers (the budget step with each cached
output and ranking, the step feeding the deterministic solver) and the paper's literal algorithm (the
test-only reference ``paper_policy.py``) on the shipped ECG models, one thread, 4 series, 30 steps. The
digests in ``data/sample_digests.json`` were recorded on main before the one-engine refactor (issue 22)
and held through it; the ``freq/*`` ones were re-recorded when ``ecg_small_freq`` was retrained with the
time-domain head (issue 24; the ``time/*`` ones stayed equal). A change of any sample byte fails here.
Regenerate them only for an intended change of the numbers, and say so in the commit:

    python tests/test_sample_digests.py --write
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from paper_policy import PaperConfig, PaperSampler
from pyfdc.e2crf import E2CRFConfig
from pyfdc.sampling.sampler import Sampler

DIGESTS = Path(__file__).with_name("data") / "sample_digests.json"
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


def digest(case: str) -> str:
    """SHA-256 of the decoded samples' float32 bytes for ``case`` (one torch thread)."""
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
    return hashlib.sha256(x.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()


@pytest.mark.parametrize("case", sorted(CASES))
def test_samples_are_bitwise_pinned(case: str) -> None:
    want = json.loads(DIGESTS.read_text())
    assert case in want, f"no digest recorded for {case}: run python tests/test_sample_digests.py --write"
    assert digest(case) == want[case], f"{case}: samples changed (an intended change re-records the digests)"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_sample_digests.py --write")
    DIGESTS.parent.mkdir(exist_ok=True)
    DIGESTS.write_text(json.dumps({c: digest(c) for c in sorted(CASES)}, indent=1) + "\n")
    print(f"wrote {len(CASES)} digests to {DIGESTS}")

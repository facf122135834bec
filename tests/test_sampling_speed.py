"""Speed options of the uncached sampler: compiled network and bfloat16 autocast."""
from __future__ import annotations

import pytest
import torch

from pyfdc.evaluation.front import parse_spec
from pyfdc.sampling.sampler import Sampler
from tinymodels import tiny_model as _tiny_model


@pytest.fixture(scope="module")
def model():
    return _tiny_model()


def test_compiled_uncached_matches_eager(model):
    torch._dynamo.reset()
    ref = Sampler(model, "dpm2m").sample_tokens(3, steps=10, batch_size=3, progress=False)
    got = Sampler(model, "dpm2m", compile=True).sample_tokens(3, steps=10, batch_size=3, progress=False)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)   # inductor reorders fp32 sums


def test_bf16_is_close_but_not_identical(model):
    ref = Sampler(model, "dpm2m").sample_tokens(3, steps=10, batch_size=3, progress=False)
    got = Sampler(model, "dpm2m", precision="bf16").sample_tokens(3, steps=10, batch_size=3, progress=False)
    assert got.dtype == ref.dtype and not torch.equal(got, ref)    # the option really changes arithmetic
    # bf16 keeps 8 mantissa bits (rel. 4e-3 per op); 10 deterministic steps of a tiny net stay within 5%
    assert float((got - ref).norm() / ref.norm()) < 5e-2


def test_bad_speed_options(model):
    with pytest.raises(ValueError, match="precision must be one of"):
        Sampler(model, "em", precision="fp8")
    with pytest.raises(ValueError, match="uncached samplers take only"):
        parse_spec("em(tau0=1):10")
    assert parse_spec("em(compile=1,precision=bf16):10").sampler_options() == {"compile": True, "precision": "bf16"}

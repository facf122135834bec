"""Backend selection: compiled when present, the reference twins (with one warning) when not,
forced by PYFDC_FORCE_REFERENCE=1; the public ops share their twins' signatures and docstrings."""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import tempfile

import pytest
import torch

import pyfdc.ops as ops

PROBE = r"""
import json, sys, warnings
if sys.argv[1] == "block":
    sys.modules["pyfdc._C"] = None  # as if the extension were absent (a source checkout)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import torch, pyfdc.ops as ops
    import pyfdc.ops  # a second import must not warn again
    z = torch.randn(2, 5, 2)
    idx, count = ops.select_tokens(z, z + 1, torch.zeros(2, 5, dtype=torch.bool), torch.zeros(2, dtype=torch.bool),
                                   1, 0.0, 1e-3)
print(json.dumps({"backend": ops.backend("cpu"), "count": count.tolist(),
                  "warnings": [str(w.message) for w in caught if "pyfdc" in str(w.message)]}))
"""


def _probe(mode, **env):
    # cwd outside the checkout: `python -c` puts the cwd first on sys.path, and the checkout's
    # pyfdc/ has no compiled module.
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}, timeout=300, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_backend_names():
    assert ops.backend("cpu") in ("cpp", "reference")
    assert ops.backend(torch.device("cpu")) == ops.backend("cpu")
    assert ops.backend("cuda") in ("cuda", "reference")
    if ops.backend("cpu") == "cpp":
        assert ops._backend.LOADED


def test_missing_extension_falls_back_with_one_warning():
    res = _probe("block", PYFDC_FORCE_REFERENCE="0")
    assert res["backend"] == "reference"
    assert res["count"] == [5, 5]
    assert len(res["warnings"]) == 1 and "reference" in res["warnings"][0]


def test_force_reference():
    res = _probe("plain", PYFDC_FORCE_REFERENCE="1")
    assert res["backend"] == "reference" and res["count"] == [5, 5] and res["warnings"] == []


def test_compiled_imports_without_warning():
    if ops.backend("cpu") == "reference":
        pytest.skip("no compiled pyfdc ops")
    res = _probe("plain", PYFDC_FORCE_REFERENCE="0")
    assert res["backend"] == "cpp" and res["warnings"] == []


@pytest.mark.parametrize("name", ["kv_scatter", "select_tokens", "error_feedback"])
def test_twins_share_signature_and_docstring(name):
    public, twin = getattr(ops, name), getattr(ops.reference, name)
    assert inspect.signature(public) == inspect.signature(twin)
    assert public.__doc__ == twin.__doc__ and "(B," in twin.__doc__

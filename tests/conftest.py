"""Shared fixtures and the compiled-backend guard.

With ``PYFDC_EXPECT_COMPILED=1`` (set by ``.ci/run``) the session stops at once if ``pyfdc.ops``
would run the reference twins: otherwise every parity test would compare a twin with itself
(e.g. when ``python -m pytest`` from the repository root imports the checkout, which has no
``_C``).
"""
from __future__ import annotations

import os

import pytest
import torch

import pyfdc
import pyfdc.ops as ops
from pyfdc.ops import _backend


def pytest_report_header(config):
    return (f"pyfdc {pyfdc.__version__} from {os.path.dirname(pyfdc.__file__)}; "
            f"backend cpu={ops.backend('cpu')} cuda={ops.backend('cuda')}"
            + (f" ({_backend.REASON})" if _backend.REASON else ""))


def pytest_sessionstart(session):
    if os.environ.get("PYFDC_EXPECT_COMPILED", "") != "1":
        return
    problems = []
    if ops.backend("cpu") != "cpp":
        problems.append(f"CPU ops run the reference twins ({_backend.REASON or 'no CPU kernels'})")
    if torch.cuda.is_available() and torch.version.cuda and ops.backend("cuda") != "cuda":
        problems.append("a GPU is present but the extension has no CUDA kernels")
    try:  # the quality tests skip without scikit-learn; in CI (the test extra) they must run
        import sklearn  # noqa: F401
    except ImportError:
        problems.append("scikit-learn (test extra) is missing, so the C2ST tests would be skipped")
    if problems:
        pytest.exit(f"PYFDC_EXPECT_COMPILED=1 but {'; '.join(problems)}; pyfdc was imported from "
                    f"{os.path.dirname(pyfdc.__file__)}", returncode=3)

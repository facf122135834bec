"""The speed-quality front: spec parsing, verdicts, resumable runs keyed by the model, the CLI route."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")

from pyfdc.cli import TINY_MODEL, main  # noqa: E402
from pyfdc.evaluation.front import SamplerSpec, _verdicts, front_table, parse_spec, run_front  # noqa: E402
from pyfdc.e2crf import E2CRFConfig  # noqa: E402
from pyfdc.core.model import DiffusionModel  # noqa: E402
from pyfdc.core.score_net import ModelConfig, ScoreTransformer  # noqa: E402
from pyfdc.core.spectral import make_transform  # noqa: E402


def test_parse_spec_round_trips_and_rejects() -> None:
    s = parse_spec("e2crf(budget=0.35,feedback=off,solver=dpm2m):250")
    assert s == SamplerSpec("e2crf", 250, (("budget", 0.35), ("feedback", "off"), ("solver", "dpm2m")))
    assert s.name == "e2crf(budget=0.35,feedback=off,solver=dpm2m):250" and not s.uncached and s.method == "dpm2m"
    assert s.e2crf_config() == E2CRFConfig(budget=0.35, feedback=False)  # the CLI's and files' parser
    assert parse_spec("e2crf:10").e2crf_config() == E2CRFConfig() and parse_spec("e2crf:10").method == "em"
    assert parse_spec("dpm2m:25").uncached and parse_spec(" em : 10 ".replace(" ", "")).steps == 10
    for bad, msg in [("em", "KIND"), ("em:0", "steps"), ("rk4:10", "kind"), ("em(tau0=1):10", "uncached samplers take only"),
                     ("e2crf(tau0):10", "key=value"), ("e2crf(bogus=1):10", "bogus"), ("e2crf(R=0):10", "R"),
                     ("e2crf(mode=fixed):10", "unknown E2-CRF option 'mode'"), ("e2crf(solver=rk4):10", "solver")]:
        with pytest.raises(ValueError, match=msg):
            parse_spec(bad)


def _row(name: str, secs: float, acc: float, uncached: bool, n: int = 512) -> dict:
    return {"sampler": name, "uncached": uncached, "batch_seconds": secs,
            "c2st": {"headline": acc, "hgb": {"n_per_side": n}}}


def test_verdicts_compare_only_with_uncached_runs_that_take_no_longer() -> None:
    rows = [_row("em:1000 (floor)", 10.0, 0.50, True), _row("em:100", 1.0, 0.55, True),
            _row("em:25", 0.25, 0.70, True),
            _row("win", 0.5, 0.60, False),     # beats em:25 (the only uncached run as fast)
            _row("lose", 2.0, 0.60, False),    # em:100 is faster and better
            _row("fastest", 0.1, 0.9, False)]  # faster than every uncached run: no verdict
    _verdicts(rows)
    v = {r["sampler"]: r for r in rows}
    assert v["win"]["below_front"] is True and v["lose"]["below_front"] is False
    assert v["fastest"]["below_front"] is None
    # speedup at equal quality: the fastest uncached run at least as good, over the candidate's time
    assert v["win"]["speedup_at_equal_quality"] == pytest.approx(1.0 / 0.5)
    assert v["lose"]["speedup_at_equal_quality"] == pytest.approx(1.0 / 2.0)
    assert v["fastest"]["speedup_at_equal_quality"] == pytest.approx(0.25 / 0.1)


def _tiny_model(seed: int) -> DiffusionModel:
    tr = make_transform("freq", 24, 1)
    torch.manual_seed(seed)
    net = ScoreTransformer(ModelConfig(num_tokens=tr.num_tokens, token_dim=tr.token_dim, **TINY_MODEL))
    return DiffusionModel(net, tr)


def test_run_front_writes_reports_and_reuses_only_the_same_models_runs(tmp_path: Path) -> None:
    specs = ["em:5", "dpm2m:3", "e2crf(budget=0.5):6"]
    model = _tiny_model(0)
    res = run_front(model, tmp_path, specs, num_samples=20, batch_size=10, progress=False)
    assert [r["sampler"] for r in res["rows"]] == ["em:1000 (floor)", *specs]
    assert (tmp_path / "front.png").stat().st_size > 1000 and "em:1000 (floor)" in (tmp_path / "front.md").read_text()
    assert json.loads((tmp_path / "front.json").read_text())["model_id"] == res["model_id"]
    floor, e2 = res["rows"][0], res["rows"][3]
    assert floor["speedup_vs_em1000"] == 1.0 and 0 < e2["recomputed_fraction"] <= 1
    assert "paired_deviation" in e2 and "paired_deviation" not in floor
    ref_file = tmp_path / "samples" / "reference" / "em_1000.npy"
    stamp = ref_file.stat().st_mtime_ns
    again = run_front(model, tmp_path, specs, num_samples=20, batch_size=10, progress=False)
    assert ref_file.stat().st_mtime_ns == stamp  # reused, not redrawn
    assert again["rows"][1]["c2st"] == res["rows"][1]["c2st"]
    other = run_front(_tiny_model(1), tmp_path, specs[:1], num_samples=20, batch_size=10, progress=False)
    assert ref_file.stat().st_mtime_ns != stamp and other["model_id"] != res["model_id"]  # redrawn
    assert "| em:5 |" in front_table(other)
    # a reference drawn with another seed is redrawn, not reused (the reference folder holds one seed)
    stamp = ref_file.stat().st_mtime_ns
    run_front(_tiny_model(1), tmp_path, specs[:1], num_samples=20, batch_size=10, progress=False)
    assert ref_file.stat().st_mtime_ns == stamp
    run_front(_tiny_model(1), tmp_path, specs[:1], num_samples=20, batch_size=10, progress=False, ref_seed=7)
    assert ref_file.stat().st_mtime_ns != stamp
    assert json.loads(ref_file.with_suffix(".json").read_text())["seed"] == 7


def test_cli_front(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "m"
    assert main(["train", "--tiny", "--epochs", "1", "--out", str(ckpt), "--no-progress"]) == 0
    out = tmp_path / "front"
    code = main(["benchmark", "--front", "--checkpoint", str(ckpt), "--specs", "em:4", "dpm2m:4",
                 "--num-samples", "10", "--batch-size", "10", "--batch1", "1", "--threads", "1", "--out", str(out),
                 "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0 and "| dpm2m:4 |" in text and "s / series at batch 1" in text
    rows = json.loads((out / "front.json").read_text())["rows"]
    assert all(np.isfinite(r["batch1_seconds"]) for r in rows)


def test_significant_verdict_needs_a_gap_beyond_sampling_error() -> None:
    """0.60 vs 0.70 at 512 per side is a win (gap 0.10 > 1.96 s.e. ≈ 0.04); 0.515 vs 0.521 a tie."""
    rows = [_row("em:25", 0.25, 0.70, True), _row("clear", 0.5, 0.60, False),
            _row("dpm2m:50", 4.1, 0.521, True), _row("tie", 9.7, 0.515, False)]
    _verdicts(rows)
    v = {r["sampler"]: r for r in rows}
    assert v["clear"]["below_front"] and v["clear"]["below_front_significant"]
    assert v["tie"]["below_front"] and not v["tie"]["below_front_significant"]

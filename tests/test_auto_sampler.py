"""``--sampler auto``: the cheapest candidate that passes the C2ST gate twice, kept per weights, in the CLI."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import pyfdc.evaluation.auto as auto
from pyfdc import cli
from pyfdc.core.checkpoint import save_checkpoint
from pyfdc.evaluation.auto import AutoChoice, c2st_gate, choose_sampler, model_auto_choice
from pyfdc.evaluation.front import SamplerRun
from pyfdc.sampling.sampler import Sampler
from tinymodels import one_thread, tiny_model  # noqa: F401


def test_the_gate_is_the_c2st_that_does_not_reject_chance() -> None:
    assert c2st_gate(128) == pytest.approx(0.5 + 1.96 * math.sqrt(0.25 / 256))
    assert c2st_gate(512) < c2st_gate(128)


def test_the_permutation_gate_is_the_null_whatever_the_two_sets() -> None:
    """The gate comes from relabelled pools, so two sets a classifier tells apart perfectly get the same kind of
    gate as two draws of one distribution (near chance), and the real pair's C2ST lies far above it."""
    from pyfdc.evaluation.quality import c2st_report

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(48, 12, 1)), rng.normal(size=(48, 12, 1))
    far = b + 3.0
    g_same, heads = auto.permutation_gate(a, b, permutations=4)
    g_far, heads_far = auto.permutation_gate(a, far, permutations=4)
    assert len(heads) == 4 and g_same == pytest.approx(np.mean(heads) + 1.645 * np.std(heads, ddof=1))
    for g, h in ((g_same, heads), (g_far, heads_far)):
        # chance is 0.5; relabellings of 2 x 48 series: each headline within ~4 binomial s.e. of it (+ the max of two)
        assert 0.5 < g < 0.75 and all(abs(x - 0.5) < 4 * math.sqrt(0.25 / 96) + 0.05 for x in h)
    assert c2st_report(a, far)["headline"] > 0.95 > g_far
    assert auto.permutation_gate(a, b, permutations=4) == (g_same, heads)   # seeded
    with pytest.raises(ValueError, match="at least 2"):
        auto.permutation_gate(a, b, permutations=1)


class Scripted:
    """Fake draws and C2STs: ``verdicts[spec] = (first, confirm)``; records every draw."""

    def __init__(self, verdicts: dict[str, tuple[float, float]]) -> None:
        self.verdicts, self.draws = verdicts, []
        self.x_of: dict[int, tuple[str, int]] = {}

    def run_sampler(self, model: Any, spec: Any, n: int, batch_size: int, seed: int, bar: Any = None) -> SamplerRun:
        self.draws.append((spec.name, seed))
        x = np.full((n, 4, 1), float(len(self.draws)))
        self.x_of[id(x)] = (spec.name, seed)
        return SamplerRun(spec, x, [0.01 * spec.steps], n)

    def c2st_report(self, a: Any, b: Any, seed: int = 0) -> dict[str, Any]:
        name, draw_seed = self.x_of[id(a)]
        first, confirm = self.verdicts[name]
        return {"headline": first if draw_seed == auto.FIRST_SEED else confirm}


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch):
    def make(verdicts: dict[str, tuple[float, float]]) -> Scripted:
        s = Scripted(verdicts)
        monkeypatch.setattr(auto, "run_sampler", s.run_sampler)
        import pyfdc.evaluation.quality as quality

        monkeypatch.setattr(quality, "c2st_report", s.c2st_report)
        return s
    return make


def test_cheapest_first_and_a_pass_must_be_confirmed(scripted: Any) -> None:
    s = scripted({"dpm2m:10": (0.52, 0.70), "em:20": (0.90, 0.50), "em:50": (0.50, 0.53), "em:80": (0.5, 0.5)})
    choice = choose_sampler(tiny_model(), 64, ["em:80", "em:50", "dpm2m:10", "em:20"], progress=False,
                            reference="em:100", gate=c2st_gate(64))
    assert choice.spec == "em:50"
    assert [(t["spec"], t["verdict"]) for t in choice.trials] == [
        ("dpm2m:10", "rejected on confirmation"), ("em:20", "rejected"), ("em:50", "chosen")]
    # the reference once; a rejected first draw is not confirmed; em:80 never drawn
    assert s.draws == [("em:100", auto.REFERENCE_SEED), ("dpm2m:10", auto.FIRST_SEED), ("dpm2m:10", auto.CONFIRM_SEED),
                       ("em:20", auto.FIRST_SEED), ("em:50", auto.FIRST_SEED), ("em:50", auto.CONFIRM_SEED)]
    assert "em:50: C2ST vs em:100 0.500 then 0.530" in choice.describe()
    assert choice.reference_seconds / choice.trials[-1]["seconds"] == pytest.approx(2.0)


def test_nothing_cheaper_passing_chooses_the_reference(scripted: Any) -> None:
    s = scripted({"em:10": (0.9, 0.9), "em:100": (0.5, 0.5)})
    choice = choose_sampler(tiny_model(), 64, ["em:10", "em:100"], progress=False, reference="em:100",
                            gate=c2st_gate(64))
    assert choice.spec == "em:100" and [t["spec"] for t in choice.trials] == ["em:10"]
    assert ("em:100", auto.FIRST_SEED) not in s.draws   # as dear as the reference: never tried
    assert "no cheaper sampler" in choice.describe()


def test_e2crf_candidates_are_ordered_by_their_calibrated_budget(scripted: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An open-budget E2-CRF candidate is calibrated when reached and re-queued at its real cost; one whose
    calibration samples uncached is skipped (it is the uncached sampler at those steps)."""
    import pyfdc.e2crf.calibrate as ec
    from pyfdc.e2crf import E2CRFConfig

    budgets = {40: 0.2, 60: None}

    class Cal:
        def __init__(self, steps: int) -> None:
            self.config = None if budgets[steps] is None else E2CRFConfig(budget=budgets[steps], tail=0.1)

    monkeypatch.setattr(ec, "calibration_for", lambda model, steps, *a, **k: Cal(steps))
    s = scripted({"e2crf(budget=0.2,tail=0.1):40": (0.9, 0.9), "em:15": (0.9, 0.9), "em:30": (0.9, 0.9), "em:50": (0.5, 0.5)})
    choice = choose_sampler(tiny_model(), 64, ["em:30", "e2crf:40", "e2crf:60", "em:15", "em:50"], progress=False,
                            reference="em:100", gate=c2st_gate(64))
    # nominal costs: em:15 15; e2crf:40 26 before its calibration, 36 * (0.2 + 0.15) + 4 (its tail) = 16.6 after;
    # em:30 30; e2crf:60 39 before (its calibration samples uncached: skipped); em:50 50. The trial samples the
    # calibrated config, tail included
    assert [t["spec"] for t in choice.trials] == ["em:15", "e2crf(budget=0.2,tail=0.1):40", "em:30", "e2crf:60",
                                                  "em:50"]
    assert choice.trials[3]["verdict"].startswith("skipped") and choice.spec == "em:50"
    assert not any(name.startswith("e2crf:60") for name, _ in s.draws)


def test_a_real_choice_rejects_a_sampler_that_changes_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto, "NULL_PERMUTATIONS", 5)
    model = tiny_model()
    choice = choose_sampler(model, 48, ["em:2", "em:38"], batch_size=48, progress=False, reference="em:40")
    first = choice.trials[0]
    assert first["spec"] == "em:2" and first["verdict"] == "rejected" and first["c2st"] > choice.gate
    # the gate is the permutation null of the shadow set pooled with em:2's draw
    assert len(choice.gate_null) == auto.NULL_PERMUTATIONS
    assert choice.gate == pytest.approx(np.mean(choice.gate_null) + 1.645 * np.std(choice.gate_null, ddof=1))
    for t in choice.trials:
        if t["verdict"] == "chosen":
            assert max(t["c2st"], t["c2st_confirm"]) <= choice.gate
    assert choice.spec in ("em:38", "em:40")


def _fake_choice(model: Any, spec: str = "em:7") -> AutoChoice:
    from pyfdc.core.model import weights_fingerprint

    trial = {"spec": spec, "seconds": 0.1, "c2st": 0.5, "c2st_confirm": 0.51, "verdict": "chosen"}
    n = auto.AUTO_SHADOW
    return AutoChoice(spec, weights_fingerprint(model), n, auto.REFERENCE, c2st_gate(n), 1.0, 2.0, [trial],
                      clip_tag="")


def test_the_choice_is_kept_per_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyfdc.core.checkpoint import load_checkpoint

    made: list[int] = []
    monkeypatch.setattr(auto, "choose_sampler", lambda model, *a, **k: made.append(1) or _fake_choice(model))
    save_checkpoint(tmp_path / "ck", tiny_model())
    said: list[str] = []
    first = model_auto_choice(load_checkpoint(tmp_path / "ck"), progress=False, say=said.append)
    kept = auto.auto_file(tmp_path / "ck", auto.AUTO_SHADOW)
    assert made == [1] and AutoChoice.load(kept) == first and f"kept in {kept}" in said[-1]
    assert model_auto_choice(load_checkpoint(tmp_path / "ck"), progress=False) == first and made == [1]
    save_checkpoint(tmp_path / "ck", tiny_model(seed=1))   # retrained
    model_auto_choice(load_checkpoint(tmp_path / "ck"), progress=False, say=said.append)
    assert made == [1, 1] and any("made for other weights" in line for line in said)
    kept.write_text("{not json")
    model_auto_choice(load_checkpoint(tmp_path / "ck"), progress=False, say=said.append)
    assert made == [1, 1, 1] and any("cannot read an auto choice" in line for line in said)
    older = json.loads(kept.read_text())
    del older["rules"]   # made before its E2-CRF candidates got today's calibration: made again
    kept.write_text(json.dumps(older))
    model_auto_choice(load_checkpoint(tmp_path / "ck"), progress=False, say=said.append)
    assert made == [1, 1, 1, 1] and any("made by an older pyfdc" in line for line in said)
    older = json.loads(kept.read_text())
    del older["clip_tag"]   # an older pyfdc kept a --clip off choice under this name too: made again
    kept.write_text(json.dumps(older))
    model_auto_choice(load_checkpoint(tmp_path / "ck"), progress=False, say=said.append)
    assert made == [1, 1, 1, 1, 1] and any("did not record the clip setting" in line for line in said)


def test_cli_auto_samples_with_the_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(auto, "REFERENCE", "em:20")
    monkeypatch.setattr(auto, "AUTO_CANDIDATES", ("em:2", "em:19"))
    monkeypatch.setattr(auto, "NULL_PERMUTATIONS", 3)
    model = tiny_model()
    save_checkpoint(tmp_path / "ck", model)
    assert cli.main(["sample", "--checkpoint", str(tmp_path / "ck"), "--sampler", "auto", "--num-samples", "3",
                     "--no-progress", "--out", str(tmp_path / "s")]) == 0
    choice = AutoChoice.load(auto.auto_file(tmp_path / "ck", auto.AUTO_SHADOW))
    info = json.loads((tmp_path / "s" / cli.SAMPLE_INFO_FILE).read_text())
    spec = choice.sampler_spec
    assert (info["sampler"], info["steps"]) == (spec.kind, spec.steps)
    err = capsys.readouterr().err
    assert "auto: this model's sampler: " + choice.describe() in err
    ref = Sampler(model, spec.method).sample(3, steps=spec.steps, seed=0, progress=False).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "s" / cli.SAMPLES_FILE), ref, rtol=1e-5, atol=1e-6)


def test_cli_auto_refuses_a_step_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_checkpoint(tmp_path / "ck", tiny_model())
    code = cli.main(["sample", "--checkpoint", str(tmp_path / "ck"), "--sampler", "auto", "--steps", "10",
                     "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--steps cannot be combined with --sampler auto" in err[0]
    assert not (tmp_path / "s").exists()

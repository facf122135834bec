"""E2-CRF calibration: the cheapest passing candidate, the uncached fallback, saving, the CLI round trip."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pyfdc import cli
from pyfdc.core.checkpoint import save_checkpoint
from pyfdc.e2crf import E2CRFConfig
from pyfdc.e2crf.calibrate import Calibration, calibrate, default_config
from pyfdc.sampling.sampler import Sampler
from tinymodels import head_model, one_thread, tiny_model  # noqa: F401

STEPS, SHADOW = 20, 6
LOOSE = {"max_shift": 10.0, "max_deviation": 10.0, "max_band_error": 10.0, "min_speedup": 0.0}


def test_loose_targets_take_the_cheapest_candidate() -> None:
    cal = calibrate(tiny_model(), STEPS, num_shadow=SHADOW, progress=False, **LOOSE)
    assert not cal.fallback and cal.config.budget == 0.2 and cal.config.ranking == "drift"
    assert cal.config.cached_output == "features"  # 'auto' resolved: the tiny model has no token moments
    assert len(cal.rows) == 1 and cal.rows[0]["passed"]  # stops at the first pass: no wasted runs
    row = cal.rows[0]
    assert 0 < row["deviation_median"] < 10 and set(row["band_power_error"]) == set(row["band_deviation"])
    assert 0 < row["recomputed_fraction"] <= 1
    table = calibrate(tiny_model(), STEPS, num_shadow=SHADOW, progress=False, all_candidates=True, **LOOSE)
    assert [r["candidate"]["budget"] for r in table.rows] == [0.2, 0.35, 0.5, 0.7] and table.config.budget == 0.2
    fractions = [r["recomputed_fraction"] for r in table.rows]
    assert fractions == sorted(fractions)  # candidates ordered by cost


def test_each_budget_tries_the_reused_time_head_first() -> None:
    """With a time head, each budget is tried with the head every 4 steps, then every step; without one, once
    (the period changes nothing there); a period the base sets stays."""
    table = calibrate(head_model(), STEPS, num_shadow=SHADOW, progress=False, all_candidates=True, **LOOSE)
    tried = [(r["candidate"]["budget"], r["candidate"]["head_every"]) for r in table.rows]
    assert tried == [(b, h) for b in (0.2, 0.35, 0.5, 0.7) for h in (4, 1)]
    assert table.config.head_every == 4 and table.candidate_set == "budgets+head-reuse"
    without = calibrate(tiny_model(), STEPS, num_shadow=SHADOW, progress=False, all_candidates=True, **LOOSE)
    assert [r["candidate"]["budget"] for r in without.rows] == [0.2, 0.35, 0.5, 0.7]
    assert without.config.head_every is None
    fixed = calibrate(head_model(), STEPS, base=E2CRFConfig(head_every=1), num_shadow=SHADOW, progress=False,
                      all_candidates=True, **LOOSE)
    assert len(fixed.rows) == 4 and fixed.config.head_every == 1 and fixed.candidate_set == "custom"
    assert all(r["candidate"]["head_every"] == 1 for r in fixed.rows)   # rows say what ran
    custom = calibrate(head_model(), STEPS, candidates=[{"budget": 0.2}], num_shadow=SHADOW, progress=False, **LOOSE)
    assert custom.candidate_set == "custom"


def test_targets_are_applied_to_measured_deviation() -> None:
    model = tiny_model()
    first = calibrate(model, STEPS, num_shadow=SHADOW, progress=False, **LOOSE).rows[0]
    # a deviation target just below what the cheapest candidate measured rejects it; a larger budget
    # deviates less (recomputes more), so it can pass
    tight = {**LOOSE, "max_deviation": first["deviation_median"] * 0.999}
    cal = calibrate(model, STEPS, num_shadow=SHADOW, progress=False, candidates=[{"budget": 0.2}, {"budget": 1.0}],
                    **tight)
    assert [r["passed"] for r in cal.rows] == [False, True] and cal.config.budget == 1.0
    assert cal.rows[1]["deviation_median"] < first["deviation_median"]


def test_the_default_gate_is_the_statistic_shift() -> None:
    model = tiny_model()
    loose = {**LOOSE, "max_shift": None}
    first = calibrate(model, STEPS, num_shadow=SHADOW, progress=False, **loose).rows[0]
    assert first["shift"] > 0 and first["passed"]
    tight = {**loose, "max_shift": first["shift"] * 0.999}
    cal = calibrate(model, STEPS, num_shadow=SHADOW, progress=False, candidates=[{"budget": 0.2}, {"budget": 1.0}],
                    **tight)
    assert [r["passed"] for r in cal.rows] == [False, True] and cal.config.budget == 1.0
    assert cal.targets["max_shift"] == tight["max_shift"] and cal.targets["max_deviation"] == 10.0


def test_statistic_shift_is_a_standardised_paired_shift() -> None:
    from pyfdc.e2crf.shadow import statistic_shift

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(200, 40, 2))
    assert all(v == 0.0 for v in statistic_shift(ref, ref).values())
    hi = np.fft.rfft(ref, axis=1)
    hi[:, :12] = 0
    louder = ref + 0.05 * np.fft.irfft(hi, n=40, axis=1)  # +5% amplitude (~+10% power) in bins >= 12 only
    got = statistic_shift(louder, ref)
    assert list(got)[:5] == ["k0-2", "k2-6", "k6-13", "k13-21", "curvature"]
    assert {"abs_diff2", "band7", "q05", "corr"} <= set(got)  # the C2ST classifier's statistics too
    # untouched bands: round-off only; the louder top band moves by more than the default gate
    from pyfdc.e2crf.calibrate import DEFAULT_TARGETS

    gate = DEFAULT_TARGETS["max_shift"]
    assert got["k0-2"] < 1e-9 and got["k2-6"] < 1e-9 and got["k13-21"] > gate and got["curvature"] > gate
    # scale-free: the same change in data a million times smaller reads the same
    small = statistic_shift(1e-6 * louder, 1e-6 * ref)
    assert small == pytest.approx(got, rel=1e-6)
    with pytest.raises(ValueError, match="equal shapes"):
        statistic_shift(ref[:3], ref[:4])


def test_curvature_sees_jitter_that_spectra_hide() -> None:
    """Smooth non-periodic series (Sines-like): jitter of 0.1% of their range hides under the spectrum's
    edge leakage (every band within 0.1 sd) but doubles the curvature energy."""
    from pyfdc.e2crf.shadow import statistic_shift

    rng = np.random.default_rng(1)
    t = np.arange(24)[None, :, None]
    smooth = 0.5 + 0.5 * np.sin(rng.uniform(0, 0.1, (300, 1, 1)) * t + rng.uniform(0, 0.1, (300, 1, 1)))
    jittered = smooth + 6e-4 * rng.normal(size=smooth.shape)
    got = statistic_shift(jittered, smooth, summaries=False)
    assert max(v for k, v in got.items() if k != "curvature") < 0.1 < got["curvature"]


def test_the_gate_reads_the_statistics_the_classifier_sees() -> None:
    """64 of the shipped ECG model's E2-CRF samples (f 0.35, 1,000 EM steps) and their uncached twins: a
    classifier told 256 such samples from EM-1000 at 0.58–0.62 (floor 0.49–0.53). Band powers and log curvature
    stay under the 0.15 gate; mean |Δ²x| (jitter on the flat stretches, which the squared form hides under the
    QRS peak) moves by ~0.5 sd — the gate has to see it."""
    from pyfdc.e2crf.calibrate import DEFAULT_TARGETS
    from pyfdc.e2crf.shadow import statistic_shift

    twins = np.load(Path(__file__).parent / "data" / "ecg_cache_twins.npz")
    gate = DEFAULT_TARGETS["max_shift"]
    former = statistic_shift(twins["cached"], twins["uncached"], summaries=False)
    assert max(former.values()) < gate
    got = statistic_shift(twins["cached"], twins["uncached"])
    assert got["abs_diff2"] > 2 * gate and max(got.values()) == got["abs_diff2"]
    assert max(statistic_shift(twins["uncached"], twins["uncached"]).values()) == 0.0


def test_a_pinned_statistic_does_not_read_rounding_as_a_shift() -> None:
    """A statistic constant over the reference (a pinned first value): float32 rounding in the candidate is not a
    shift; a real move of it is (infinitely) large."""
    from pyfdc.e2crf.shadow import statistic_shift

    rng = np.random.default_rng(3)
    ref = rng.normal(size=(40, 30, 1))
    ref[:, 0] = 0.25
    rounded = ref.astype(np.float32).astype(np.float64)
    assert statistic_shift(rounded, ref)["first"] == 0.0
    moved = ref.copy()
    moved[:, 0] += 0.01
    assert statistic_shift(moved, ref)["first"] == np.inf


def test_no_passing_candidate_falls_back_to_uncached_sampling() -> None:
    model = tiny_model()
    cal = calibrate(model, STEPS, num_shadow=SHADOW, progress=False, **{**LOOSE, "max_deviation": 0.0})
    assert cal.fallback and all(not r["passed"] for r in cal.rows) and len(cal.rows) == 4
    assert cal.config is None
    sampler = Sampler(model, "em", cache=cal.config)
    x, stats = sampler.sample(3, steps=STEPS, seed=1, progress=False), sampler.stats
    ref = Sampler(model, "em").sample(3, steps=STEPS, seed=1, progress=False)
    torch.testing.assert_close(x, ref)  # the fallback is uncached EM (float32 default tolerance)
    assert stats.mean_recomputed_fraction == 1.0


def test_calibration_round_trips_and_rejects_bad_input(tmp_path: Path) -> None:
    cal = calibrate(tiny_model(), STEPS, num_shadow=SHADOW, progress=False, **LOOSE)
    cal.save(tmp_path / "c.json")
    back = Calibration.load(tmp_path / "c.json")
    assert back.config == cal.config and back.steps == STEPS and back.rows == json.loads(json.dumps(cal.rows))
    cfg = E2CRFConfig(tau_warn=math.inf)
    assert E2CRFConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Calibration.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a pyfdc E2-CRF calibration"):
        Calibration.load(tmp_path / "other.json")
    d = cal.to_dict()
    d["config"]["budgett"] = 0.3
    with pytest.raises(ValueError, match="unknown E2-CRF config fields"):
        Calibration.from_dict(d)
    with pytest.raises(ValueError, match="num_shadow must be >= 4"):
        calibrate(tiny_model(), STEPS, num_shadow=2)
    with pytest.raises(ValueError, match="candidate .*budget"):
        calibrate(tiny_model(), STEPS, candidates=[{"budget": 2.0}])
    with pytest.raises(ValueError, match="max_deviation must be None or a finite number"):
        calibrate(tiny_model(), STEPS, max_deviation=float("nan"))


def test_cli_calibrate_then_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "ck"
    save_checkpoint(ckpt, tiny_model())
    code = cli.main(["calibrate", "--checkpoint", str(ckpt), "--steps", str(STEPS), "--shadow", str(SHADOW),
                     "--budgets", "0.5", "0.2", "--max-deviation", "10", "--max-band-error", "10",
                     "--min-speedup", "0", "--out", str(tmp_path / "cal"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "budget 0.2" in capsys.readouterr().err  # budgets are tried cheapest first
    cal_file = tmp_path / "cal" / cli.CALIBRATION_FILE
    assert (tmp_path / "cal" / cli.CALIBRATION_PLOT).stat().st_size > 1000  # a PNG, not an empty file
    base = ["sample", "--checkpoint", str(ckpt), "--sampler", "e2crf", "--num-samples", "3", "--no-progress"]
    assert cli.main(base + ["--steps", str(STEPS), "--e2crf-config", str(cal_file), "--out", str(tmp_path / "s")]) == 0
    info = json.loads((tmp_path / "s" / cli.SAMPLE_INFO_FILE).read_text())
    assert info["e2crf_config"]["budget"] == 0.2 and info["e2crf_config"]["tail"] == 0.05  # the default tail
    assert cli.main(["calibrate", "--checkpoint", str(ckpt), "--steps", str(STEPS), "--shadow", str(SHADOW),
                     "--budgets", "0.2", "--tail", "0", "--min-speedup", "0", "--max-shift", "100",
                     "--out", str(tmp_path / "cal0"), "--no-progress"]) == 0
    assert Calibration.load(tmp_path / "cal0" / cli.CALIBRATION_FILE).config.tail == 0.0
    with pytest.raises(SystemExit) as exc:  # argparse: a usage error, exit 2, one line
        cli.main(["calibrate", "--checkpoint", str(ckpt), "--tail", "1", "--out", str(tmp_path / "x")])
    assert exc.value.code == 2 and "expected a number in [0, 1), got '1'" in capsys.readouterr().err
    assert cli.main(base + ["--steps", "50", "--e2crf-config", str(cal_file), "--out", str(tmp_path / "t")]) == 2
    assert "calibrated for 20 steps" in capsys.readouterr().err
    assert cli.main(base + ["--steps", str(STEPS), "--e2crf-config", str(cal_file), "--e2crf-budget", "0.3",
                            "--out", str(tmp_path / "u")]) == 2
    assert "replaces the other --e2crf-* options" in capsys.readouterr().err
    other = tmp_path / "other"  # the same architecture, other weights: the calibration is not its own
    save_checkpoint(other, tiny_model(seed=1))
    assert cli.main(["sample", "--checkpoint", str(other), "--sampler", "e2crf", "--num-samples", "3", "--no-progress",
                     "--steps", str(STEPS), "--e2crf-config", str(cal_file), "--out", str(tmp_path / "v")]) == 2
    assert "was calibrated for another model" in capsys.readouterr().err and not (tmp_path / "v").exists()
    legacy = json.loads(cal_file.read_text())
    legacy.pop("model_id")
    cal_file.write_text(json.dumps(legacy))
    assert cli.main(base + ["--steps", str(STEPS), "--e2crf-config", str(cal_file), "--out", str(tmp_path / "w")]) == 2
    assert "records no model" in capsys.readouterr().err


def _counted_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model) -> tuple[list[int], Path, list[str]]:
    """``model`` saved in ``tmp_path/ck``; the calibrations made (one entry each, SHADOW series) and the
    ``pyfdc sample --sampler e2crf`` arguments of its default (``--out`` left to add)."""
    import pyfdc.e2crf.calibrate as ec

    made: list[int] = []
    real = ec.calibrate
    monkeypatch.setattr(ec, "calibrate", lambda *a, **k: made.append(1) or real(*a, **{**k, "num_shadow": SHADOW}))
    ckpt = tmp_path / "ck"
    save_checkpoint(ckpt, model)
    return made, ckpt, ["sample", "--checkpoint", str(ckpt), "--sampler", "e2crf", "--num-samples", "2", "--steps",
                        str(STEPS), "--no-progress"]


def test_default_is_the_models_own_calibration(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """--sampler e2crf without options calibrates the model on first use, keeps the result in the
    checkpoint folder for these weights only, and reuses it; no constant preset."""
    import pyfdc.e2crf.calibrate as ec
    from pyfdc.core.model import weights_fingerprint

    made, ckpt, base = _counted_default(tmp_path, monkeypatch, tiny_model())
    assert cli.main(base + ["--out", str(tmp_path / "a")]) == 0
    kept = ec.calibration_file(ckpt, STEPS)
    cal = Calibration.load(kept)
    assert made == [1] and cal.steps == STEPS and cal.model_id == weights_fingerprint(tiny_model())
    info = json.loads((tmp_path / "a" / cli.SAMPLE_INFO_FILE).read_text())
    assert info["e2crf_config"] == (None if cal.config is None else {
        k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in cal.config.to_dict().items()})
    assert "calibrating E2-CRF" in capsys.readouterr().err
    assert cli.main(base + ["--out", str(tmp_path / "b")]) == 0  # kept: not made again
    assert made == [1] and "calibrating" not in capsys.readouterr().err
    other = Calibration.load(kept)
    other.targets = {**other.targets, "max_shift": 0.5}  # made with other targets: not today's default
    other.save(kept)
    assert cli.main(base + ["--out", str(tmp_path / "b2")]) == 0
    assert made == [1, 1] and "other targets" in capsys.readouterr().err
    older = Calibration.load(kept).to_dict()
    del older["statistics"]  # a file from before the gate read the classifier's statistics: made again
    kept.write_text(json.dumps(older))
    assert cli.main(base + ["--out", str(tmp_path / "b3")]) == 0
    assert made == [1, 1, 1] and "older shadow test" in capsys.readouterr().err
    older = Calibration.load(kept).to_dict()
    del older["candidate_set"]  # from before the time head could be reused: the same candidates without a head
    kept.write_text(json.dumps(older))
    assert cli.main(base + ["--out", str(tmp_path / "b4")]) == 0
    assert made == [1, 1, 1] and "calibrating" not in capsys.readouterr().err
    save_checkpoint(ckpt, tiny_model(seed=1))  # retrained: the kept one is for other weights
    assert cli.main(base + ["--out", str(tmp_path / "c")]) == 0
    assert made == [1, 1, 1, 1] and "made for other weights" in capsys.readouterr().err
    assert Calibration.load(kept).model_id == weights_fingerprint(tiny_model(seed=1))


def test_default_falls_back_to_uncached_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyfdc.e2crf.calibrate as ec

    model = tiny_model()
    ckpt = tmp_path / "ck"
    save_checkpoint(ckpt, model)
    from pyfdc.core.model import weights_fingerprint

    failed = calibrate(model, STEPS, num_shadow=SHADOW, progress=False, **{**LOOSE, "max_deviation": 0.0})
    assert failed.fallback
    # kept as if made with today's default targets (those are what a kept calibration must match)
    Calibration(failed.config, True, STEPS, "em", dict(ec.DEFAULT_TARGETS), failed.rows, SHADOW,
                model_id=weights_fingerprint(model), clip_tag="", candidate_set=ec.CANDIDATE_SET).save(ec.calibration_file(ckpt, STEPS))
    assert cli.main(["sample", "--checkpoint", str(ckpt), "--sampler", "e2crf", "--num-samples", "3", "--steps",
                     str(STEPS), "--no-progress", "--out", str(tmp_path / "s")]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "e2crf:" in line]
    assert len(said) == 1 and "sampling uncached" in said[0], said
    x = np.load(tmp_path / "s" / cli.SAMPLES_FILE)
    ref = Sampler(model, "em").sample(3, steps=STEPS, seed=0, progress=False).numpy()
    np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-6)  # uncached EM, float32 rounding


def test_default_config_is_remembered_per_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyfdc.e2crf.calibrate as ec

    made: list[int] = []
    real = ec.calibrate
    monkeypatch.setattr(ec, "calibrate", lambda *a, **k: made.append(1) or real(*a, **{**k, "num_shadow": SHADOW}))
    model = tiny_model()
    first = default_config(model, STEPS, progress=False)
    assert default_config(model, STEPS, progress=False) == first and made == [1]
    with torch.no_grad():
        model.net.out_proj.weight.mul_(0.5)  # other weights: the remembered calibration no longer applies
    default_config(model, STEPS, progress=False)
    assert made == [1, 1]
    # E2CRFConfig() in the one Sampler is the same remembered calibration (no second calibration)
    x = Sampler(model, "em", cache=E2CRFConfig()).sample(2, steps=STEPS, progress=False)
    assert made == [1, 1] and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="steps must be a positive int"):
        default_config(model, 0)


def test_clip_off_keeps_its_own_calibration(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The support clip changes every step's estimate: a calibration made with it is not reused with
    --clip off (nor the other way round); each setting keeps its own file, neither overwrites the other."""
    import pyfdc.e2crf.calibrate as ec
    from pyfdc.core.model import weights_fingerprint
    from pyfdc.core.support import SupportBounds

    made: list[int] = []
    real = ec.calibrate
    monkeypatch.setattr(ec, "calibrate", lambda *a, **k: made.append(1) or real(*a, **{**k, "num_shadow": SHADOW}))
    model = tiny_model()
    model.bounds = SupportBounds(np.full(model.transform.m, -1.0), np.full(model.transform.m, 1.0))
    ckpt = tmp_path / "ck"
    save_checkpoint(ckpt, model)
    base = ["sample", "--checkpoint", str(ckpt), "--sampler", "e2crf", "--num-samples", "2", "--steps", str(STEPS),
            "--no-progress"]
    assert cli.main(base + ["--out", str(tmp_path / "on")]) == 0 and made == [1]
    assert cli.main(base + ["--clip", "off", "--out", str(tmp_path / "off")]) == 0 and made == [1, 1]
    on, off = ec.calibration_file(ckpt, STEPS), ec.calibration_file(ckpt, STEPS, tag="-noclip")
    assert Calibration.load(on).model_id == weights_fingerprint(model)
    assert Calibration.load(off).model_id == weights_fingerprint(model) + "-noclip"
    capsys.readouterr()
    assert cli.main(base + ["--out", str(tmp_path / "on2")]) == 0
    assert cli.main(base + ["--clip", "off", "--out", str(tmp_path / "off2")]) == 0
    assert made == [1, 1] and "calibrating" not in capsys.readouterr().err  # each setting reused its own
    legacy = json.loads(on.read_text())
    del legacy["clip_tag"]  # kept by an older pyfdc, which used this name with the clip off too: made again
    on.write_text(json.dumps(legacy))
    assert cli.main(base + ["--out", str(tmp_path / "on3")]) == 0
    assert made == [1, 1, 1] and "did not record the clip setting" in capsys.readouterr().err
    assert Calibration.load(on).clip_tag == "" and Calibration.load(off).clip_tag == "-noclip"
    # an explicit calibration file made with the clip on is refused for sampling with it off
    assert cli.main(base + ["--clip", "off", "--e2crf-config", str(on), "--out", str(tmp_path / "x")]) == 2
    assert "clip setting" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert cli.main(["calibrate", "--checkpoint", str(ckpt), "--steps", str(STEPS), "--shadow", str(SHADOW),
                     "--budgets", "0.5", "--min-speedup", "0", "--max-shift", "100", "--clip", "off",
                     "--out", str(tmp_path / "cal"), "--no-progress"]) == 0
    made_off = tmp_path / "cal" / cli.CALIBRATION_FILE
    assert Calibration.load(made_off).model_id.endswith("-noclip")
    assert cli.main(base + ["--clip", "off", "--e2crf-config", str(made_off), "--out", str(tmp_path / "y")]) == 0


def test_a_kept_calibration_from_before_head_reuse_is_made_again(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import pyfdc.e2crf.calibrate as ec

    made, ckpt, base = _counted_default(tmp_path, monkeypatch, head_model())
    assert cli.main(base + ["--out", str(tmp_path / "a")]) == 0 and made == [1]
    kept = ec.calibration_file(ckpt, STEPS)
    assert Calibration.load(kept).candidate_set == ec.CANDIDATE_SET
    older = Calibration.load(kept).to_dict()
    del older["candidate_set"]
    kept.write_text(json.dumps(older))
    capsys.readouterr()
    assert cli.main(base + ["--out", str(tmp_path / "b")]) == 0
    assert made == [1, 1] and "older candidate list" in capsys.readouterr().err


def test_cli_head_period_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "ck"
    save_checkpoint(ckpt, head_model())
    assert cli.main(["calibrate", "--checkpoint", str(ckpt), "--steps", str(STEPS), "--shadow", str(SHADOW),
                     "--budgets", "0.2", "--head-every", "3", "1", "--all-candidates", "--min-speedup", "0",
                     "--max-shift", "100", "--out", str(tmp_path / "cal"), "--no-progress"]) == 0
    assert "head every 3" in capsys.readouterr().err
    cal = Calibration.load(tmp_path / "cal" / cli.CALIBRATION_FILE)
    assert [r["candidate"]["head_every"] for r in cal.rows] == [3, 1] and cal.config.head_every == 3
    assert cli.main(["sample", "--checkpoint", str(ckpt), "--sampler", "e2crf", "--e2crf-budget", "0.3",
                     "--e2crf-head-every", "2", "--steps", str(STEPS), "--num-samples", "2", "--no-progress",
                     "--out", str(tmp_path / "s")]) == 0
    assert json.loads((tmp_path / "s" / cli.SAMPLE_INFO_FILE).read_text())["e2crf_config"]["head_every"] == 2
    capsys.readouterr()
    for bad in (["calibrate", "--head-every", "0"], ["sample", "--e2crf-head-every", "x"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(bad + ["--checkpoint", str(ckpt), "--out", str(tmp_path / "x")])
        assert exc.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1

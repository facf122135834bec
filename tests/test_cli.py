"""CLI: --help, clean usage errors (exit 2, no traceback), tiny train -> sample -> evaluate, demo."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pyfdc.cli import METRICS_FILE, SAMPLE_INFO_FILE, SAMPLES_FILE, STATS_FILE, main

REPO = Path(__file__).resolve().parents[1]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main([*argv])
    except SystemExit as exc:  # argparse exits for --help and usage errors
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out + cap.err


@pytest.mark.parametrize("command", ["train", "sample", "evaluate", "demo"])
def test_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, text = _run(capsys, command, "--help")
    assert code == 0 and f"usage: pyfdc {command}" in text and "--out" in text and "--overwrite" in text
    assert "--tiny" not in text  # hidden test switch


def test_python_m_pyfdc() -> None:
    res = subprocess.run([sys.executable, "-m", "pyfdc", "--help"], capture_output=True, text=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert res.returncode == 0 and "train" in res.stdout and "evaluate" in res.stdout


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "model"
    assert main(["train", "--tiny", "--epochs", "1", "--seed", "1", "--out", str(out), "--no-progress"]) == 0
    return out


def _bad(tmp: Path, ckpt: Path) -> list[tuple[list[str], str]]:
    full = tmp / "full"
    full.mkdir(exist_ok=True)
    (full / "keep.txt").write_text("x")
    corrupt = tmp / "corrupt"
    corrupt.mkdir(exist_ok=True)
    (corrupt / "config.json").write_text("{trunc")
    return [
        (["train", "--epochs", "0", "--out", str(tmp / "a")], "expected an integer >= 1"),
        (["train", "--domain", "wavelet", "--out", str(tmp / "a")], "invalid choice"),
        (["train", "--epochs", "5", "--warmup-epochs", "9", "--out", str(tmp / "a")], "exceeds --epochs"),
        (["train", "--dataset", "nasdaq", "--data-root", str(tmp / "nowhere"), "--out", str(tmp / "a")], "nasdaq"),
        (["train", "--out", str(full)], "not empty"),
        (["train", "--resume", "--out", str(tmp / "fresh")], "nothing to resume"),
        (["sample", "--out", str(tmp / "s")], "--checkpoint"),
        (["sample", "--checkpoint", str(tmp / "missing"), "--out", str(tmp / "s")], "no such checkpoint folder"),
        (["train", "--data", str(tmp), "--out", str(tmp / "a")], "is a folder; pass one data file"),
        (["train", "--dataset", "ecg-kaggle", "--data-root", str(tmp / "nowhere"), "--out", str(tmp / "a")],
         "--data-root DIR"),
        (["sample", "--checkpoint", "ecg_small_freq", "--seed", str(2**64), "--out", str(tmp / "s")],
         "an integer in [0, 2**63)"),
        (["sample", "--checkpoint", "ecg_small_freq", "--sampler", "e2crf", "--e2crf-K", "94",
          "--out", str(tmp / "s")], "puts all N' = 94 tokens"),
        (["sample", "--checkpoint", "ecg_small_freq", "--sampler", "e2crf", "--e2crf-probes", "1000",
          "--out", str(tmp / "s")], "exceeds the 84 tokens outside the band"),
        (["sample", "--checkpoint", str(corrupt), "--out", str(tmp / "s")], "corrupt or truncated JSON"),
        (["sample", "--checkpoint", str(ckpt), "--e2crf-R", "5", "--out", str(tmp / "s")], "need --sampler e2crf"),
        (["sample", "--checkpoint", str(ckpt), "--sampler", "e2crf", "--e2crf-tau-safe", "0.9",
          "--e2crf-tau-warn", "0.5", "--out", str(tmp / "s")], "tau_safe"),
        (["sample", "--checkpoint", str(ckpt), "--steps", "-3", "--out", str(tmp / "s")], "expected an integer >= 1"),
        (["sample", "--checkpoint", str(ckpt), "--device", "gpu7", "--out", str(tmp / "s")], "not a torch device"),
        (["sample", "--checkpoint", str(ckpt), "--device", "mps", "--out", str(tmp / "s")], "'mps' is not supported"),
        (["train", "--device", "meta", "--out", str(tmp / "a")], "'meta' is not supported"),
        (["train", "--device", "cuda", "--out", str(tmp / "a")], "CUDA is not available"),
        (["evaluate", "--checkpoint", str(ckpt), "--samples", str(tmp / "none"), "--out", str(tmp / "e")],
         "not found"),
        (["train", "--scaling", "wavelet", "--out", str(tmp / "a")], "invalid choice"),
        (["benchmark", "--front", "--checkpoint", str(ckpt)], "--front needs --out"),
        (["benchmark", "--front", "--checkpoint", str(ckpt), "--specs", "em:0x", "--out", str(tmp / "f")],
         "is not KIND"),
        (["benchmark", "--front", "--checkpoint", str(ckpt), "--specs", "e2crf(tau0=-1):10", "--out",
          str(tmp / "f")], "tau0"),
        (["benchmark", "--checkpoint", str(ckpt), "--specs", "em:10"], "belong to --front"),
    ]


def test_bad_arguments_exit_2_without_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                checkpoint: Path) -> None:
    for argv, message in _bad(tmp_path, checkpoint):
        code, text = _run(capsys, *argv)
        assert code == 2, (argv, text)
        assert message in text, (argv, text)
        assert "Traceback" not in text, argv
        assert len(text.strip().splitlines()) == 1, (argv, text)        # one line, not a usage dump
    assert not (tmp_path / "s").exists() and not (tmp_path / "a").exists()  # bad sampler options are rejected before --out is created


def test_train_sample_evaluate(capsys: pytest.CaptureFixture[str], tmp_path: Path, checkpoint: Path) -> None:
    cfg = json.loads((checkpoint / "config.json").read_text())
    assert cfg["dataset"] == "ecg" and cfg["extra"]["training"]["epochs_run"] == 1

    em = tmp_path / "em"
    base = ["sample", "--checkpoint", str(checkpoint), "--num-samples", "6", "--steps", "8",
            "--batch-size", "4", "--no-progress"]
    assert _run(capsys, *base, "--out", str(em))[0] == 0
    x = np.load(em / SAMPLES_FILE)
    assert x.shape == (6, 187, 1) and x.dtype == np.float32 and np.isfinite(x).all()
    info = json.loads((em / SAMPLE_INFO_FILE).read_text())
    assert info["sampler"] == "em" and info["steps"] == 8 and info["series_per_second"] > 0
    assert not (em / STATS_FILE).exists()

    # same seed, same checkpoint -> the same series; an existing --out needs --overwrite
    code, text = _run(capsys, *base, "--out", str(em))
    assert code == 2 and "not empty" in text
    assert _run(capsys, *base, "--out", str(em), "--overwrite")[0] == 0
    np.testing.assert_array_equal(np.load(em / SAMPLES_FILE), x)

    e2 = tmp_path / "e2crf"
    assert _run(capsys, *base, "--sampler", "e2crf", "--e2crf-budget", "0.5", "--e2crf-R", "4", "--e2crf-K", "2",
                "--out", str(e2))[0] == 0
    stats = json.loads((e2 / STATS_FILE).read_text())
    assert len(stats["recomputed_fraction"]) == 8 and len(stats["event_intensity"]) == 8
    assert 0 in stats["refresh_steps"] and 4 in stats["refresh_steps"]
    assert json.loads((e2 / SAMPLE_INFO_FILE).read_text())["e2crf_config"]["R"] == 4

    assert _run(capsys, *base, "--sampler", "ddim", "--out", str(tmp_path / "ddim"))[0] == 0

    for name, samples in (("ev_em", em), ("ev_e2", e2)):
        code, text = _run(capsys, "evaluate", "--checkpoint", str(checkpoint), "--samples", str(samples),
                          "--projections", "200", "--out", str(tmp_path / name), "--no-progress")
        assert code == 0, text
        m = json.loads((tmp_path / name / METRICS_FILE).read_text())
        for key in ("sw_samples_vs_heldout", "sw_floor_train_vs_heldout"):
            for dom in ("time", "freq"):
                assert m[key][dom]["mean"] > 0 and m[key][dom]["two_se"] > 0
        assert m["num_samples"] == 6 and m["num_heldout"] > 0
        pngs = {p.name for p in (tmp_path / name).glob("*.png")}
        assert {"spectral_density.png", "sample_grid.png"} <= pngs
        assert ("e2crf_stats.png" in pngs) == (samples == e2)
        q = m["quality_vs_heldout"]
        assert {"generated", "floor_train", "gaussian"} <= set(q) and 0 <= q["generated"]["c2st"]["headline"] <= 1
        assert "C2ST vs held-out" in text and "pad_residue_p95" in q["generated"]["shape"]

    # against a reference set: C2ST + band error; same-noise pairs (same seed) are flagged
    code, text = _run(capsys, "evaluate", "--checkpoint", str(checkpoint), "--samples", str(e2), "--reference",
                      str(em), "--c2st-repeats", "0", "--projections", "200", "--out", str(tmp_path / "ev_ref"))
    assert code == 0 and "C2ST vs reference" in text and "same noise" in text, text
    m = json.loads((tmp_path / "ev_ref" / METRICS_FILE).read_text())
    assert m["quality_vs_reference"]["same_noise_pairs"] and "quality_vs_heldout" not in m


def test_evaluate_rejects_mismatched_shapes(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                             checkpoint: Path) -> None:
    np.save(tmp_path / "wrong.npy", np.zeros((4, 100, 1), dtype=np.float32))
    code, text = _run(capsys, "evaluate", "--checkpoint", str(checkpoint), "--samples", str(tmp_path / "wrong.npy"),
                      "--out", str(tmp_path / "e"))
    assert code == 2 and "(N, M) = (100, 1)" in text and "Traceback" not in text


def test_resume_via_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = str(tmp_path / "m")
    assert _run(capsys, "train", "--tiny", "--epochs", "1", "--out", out, "--no-progress")[0] == 0
    code, text = _run(capsys, "train", "--tiny", "--epochs", "2", "--out", out, "--resume", "--no-progress")
    assert code == 0 and "trained 2 epochs" in text
    # the run's warmup (10% of its first --epochs) carries over: a longer resume is not refused over it
    out = str(tmp_path / "w")
    assert _run(capsys, "train", "--tiny", "--epochs", "10", "--out", out, "--no-progress")[0] == 0
    code, text = _run(capsys, "train", "--tiny", "--epochs", "11", "--out", out, "--resume", "--no-progress")
    assert code == 0 and "trained 11 epochs" in text, text
    # so does its batch size: a run trained at the paper's 64 resumes at 64, not at the recipe's 16
    out = str(tmp_path / "b")
    assert _run(capsys, "train", "--tiny", "--epochs", "1", "--batch-size", "64", "--out", out, "--no-progress")[0] == 0
    code, text = _run(capsys, "train", "--tiny", "--epochs", "2", "--out", out, "--resume", "--no-progress")
    assert code == 0 and "trained 2 epochs" in text, text
    assert torch.load(Path(out) / "train_state.pt", weights_only=False)["config"]["batch_size"] == 64


def test_demo_tiny(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, text = _run(capsys, "demo", "--tiny", "--epochs", "1", "--minutes", "1", "--num-samples", "6",
                      "--c2st-repeats", "1", "--steps", "6", "--out", str(tmp_path / "demo"), "--no-progress")
    assert code == 0, text
    assert "| em |" in text and "| e2crf |" in text and "data floor" in text and "Gaussian" in text
    assert "C2ST against 91 held-out beats" in text and "SW" not in text
    assert (tmp_path / "demo" / "demo_results.md").is_file()
    assert (tmp_path / "demo" / "eval_e2crf" / "e2crf_stats.png").is_file()


def test_gaussian_baseline_matches_moments() -> None:
    from pyfdc.cli import gaussian_baseline

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(400, 3, 2)) * [1.0, 3.0] + 5.0).astype(np.float32)
    g = gaussian_baseline(x, 4000, seed=1)
    assert g.shape == (4000, 3, 2) and g.dtype == np.float32
    # 4000 draws: s.e. of a mean ~ 3/sqrt(4000) ~ 0.05, of a std ~ 3/sqrt(8000) ~ 0.035; 0.2 is > 4 s.e.
    np.testing.assert_allclose(g.mean(axis=0), x.mean(axis=0), atol=0.2)
    np.testing.assert_allclose(g.std(axis=0), x.std(axis=0), atol=0.2)


def test_benchmark_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(capsys, "benchmark", "--help")
    assert code == 0 and "usage: pyfdc benchmark" in text and "--repeats" in text


def test_benchmark_on_shipped_model(capsys: pytest.CaptureFixture[str]) -> None:
    # Forcing a full refresh every step (R=1) makes E2-CRF compute exactly what uncached EM does,
    # so the paired deviation must be ~0 (float32 round-off through 1 + 5 steps: far below 1e-3)
    # and the recomputed fraction exactly 1.
    code, text = _run(capsys, "benchmark", "--num-samples", "2", "--batch-size", "2", "--steps", "5",
                      "--repeats", "1", "--e2crf-R", "1")
    assert code == 0, text
    row = next(line for line in text.splitlines() if line.startswith("| e2crf"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[3]) == 1.0  # f
    assert float(cells[6].split()[0]) < 1e-3


def test_benchmark_rejects_non_e2crf(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(capsys, "benchmark", "--sampler", "ddim", "--steps", "2")
    assert code == 2 and "benchmark compares e2crf" in text and "Traceback" not in text


def test_demo_uses_shipped_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, text = _run(capsys, "demo", "--num-samples", "6", "--c2st-repeats", "1", "--steps", "6",
                      "--out", str(tmp_path / "d"), "--no-progress")
    assert code == 0, text
    assert "shipped model trained" in text and not (tmp_path / "d" / "model").exists()
    assert (tmp_path / "d" / "eval_em" / METRICS_FILE).is_file()
    # the time-domain baseline shipped beside it gets its own row and evaluation
    assert "em (time-domain model)" in text and (tmp_path / "d" / "eval_em_time" / METRICS_FILE).is_file()


def test_sample_clip_auto_and_off_by_shipped_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # a shipped checkpoint by name; --clip auto records and keeps the range, --clip off samples the bare net
    outs = {}
    for clip in ("auto", "off"):
        out = tmp_path / clip
        code, text = _run(capsys, "sample", "--checkpoint", "ecg_small_freq", "--num-samples", "4", "--steps", "8",
                          "--sampler", "dpm2m", "--clip", clip, "--out", str(out), "--no-progress")
        assert code == 0, text
        outs[clip] = (json.loads((out / SAMPLE_INFO_FILE).read_text()), np.load(out / SAMPLES_FILE))
    info_on, x_on = outs["auto"]
    info_off, x_off = outs["off"]
    assert info_on["support_clip"] == {"low": [0.0], "high": [1.0]} and info_off["support_clip"] is None
    assert x_on.min() >= 0.0 and x_on.max() <= 1.0
    assert not np.array_equal(x_on, x_off)  # the option reaches the sampler
    code, text = _run(capsys, "sample", "--checkpoint", "ecg_small_freq", "--clip", "sometimes", "--out", str(tmp_path / "x"))
    assert code == 2 and "--clip" in text and "Traceback" not in text

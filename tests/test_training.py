"""Training loop: config validation, schedule, determinism, resume, held-out isolation, budget."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import pyfdc.training.trainer as training
from pyfdc.training.state import _fit_schedule_to_budget
from pyfdc.core.checkpoint import load_checkpoint, read_config
from pyfdc.data import TimeSeriesDataset
from pyfdc.training.trainer import TrainConfig, lr_factor, split_indices, train

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "rff_dim": 8}


def _dataset(n: int = 48, length: int = 16, m: int = 2) -> TimeSeriesDataset:
    rng = np.random.default_rng(1)
    t = np.arange(length)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, m))
    x = 5.0 + 2.0 * np.sin(2 * np.pi * t / 8 + phase) + 0.1 * rng.normal(size=(n, length, m))
    return TimeSeriesDataset("synth", train=x[: n - 8], test=x[n - 8:])


def _cfg(**kw: Any) -> TrainConfig:
    base = {"epochs": 4, "batch_size": 16, "warmup_epochs": 1, "seed": 3}
    return TrainConfig(**{**base, **kw})


def _weights(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.net.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("field", "value"), [
    ("epochs", 0), ("batch_size", 0), ("batch_size", 2.5), ("lr", 0.0), ("lr", float("nan")),
    ("weight_decay", -1.0), ("warmup_epochs", 5), ("ema_decay", 1.0), ("val_fraction", 1.0),
    ("seed", -1), ("grad_clip", 0.0), ("max_minutes", -2.0), ("val_repeats", 0), ("keep", "final"),
])
def test_config_validation_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        _cfg(**{field: value})


def test_lr_schedule_warmup_then_cosine() -> None:
    f = [lr_factor(s, 4, 20) for s in range(20)]
    assert f[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f[4] == 1.0 and all(a >= b for a, b in zip(f[4:], f[5:]))
    assert f[-1] == pytest.approx(0.5 * (1 + np.cos(np.pi * 15 / 16)))
    assert lr_factor(20, 4, 20) == pytest.approx(0.0, abs=1e-12)


def test_split_is_seeded_disjoint_and_complete() -> None:
    fit, val = split_indices(50, 0.2, 7)
    assert len(val) == 10 and not set(fit) & set(val) and sorted([*fit, *val]) == list(range(50))
    assert np.array_equal(val, split_indices(50, 0.2, 7)[1])
    assert not np.array_equal(val, split_indices(50, 0.2, 8)[1])
    assert len(split_indices(50, 0.0, 0)[1]) == 0


def test_deterministic_under_seed_and_learns(tmp_path: Path) -> None:
    ds = _dataset()
    a = train(ds, tmp_path / "a", TINY, train_config=_cfg(), progress=False)
    b = train(ds, tmp_path / "b", TINY, train_config=_cfg(), progress=False)
    c = train(ds, tmp_path / "c", TINY, train_config=_cfg(seed=4), progress=False)
    assert _same(_weights(a.model), _weights(b.model))
    assert not _same(_weights(a.model), _weights(c.model))
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert a.history[-1]["train_loss"] < a.history[0]["train_loss"]
    assert a.epochs_run == 4 and 1 <= a.best_epoch <= 4
    assert a.best_val_loss == min(h["val_loss"] for h in a.history)
    # the returned model is the saved best checkpoint, with the fit split's standardizer
    assert _same(_weights(a.model), _weights(load_checkpoint(tmp_path / "a")))
    fit, _ = split_indices(len(ds.train), 0.1, 3)
    np.testing.assert_allclose(a.model.standardizer.mean, ds.train[fit].mean(axis=(0, 1)), rtol=1e-6)
    # ... and the fit split's token moments (written into the checkpoint)
    z = a.model.data_to_tokens(torch.as_tensor(ds.train[fit], dtype=torch.float32)).double()
    np.testing.assert_allclose(load_checkpoint(tmp_path / "a").token_moments.var, z.var(0, unbiased=False).numpy(),
                               rtol=1e-4, atol=1e-8)
    assert read_config(tmp_path / "a")["extra"]["training"]["best_epoch"] == a.best_epoch
    assert len(json.loads((tmp_path / "a" / "history.json").read_text())) == 4


@pytest.mark.parametrize("keep", ["best", "last"])
def test_the_checkpoint_keeps_the_best_or_the_last_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          keep: str) -> None:
    """A validation loss that is lowest at epoch 2 of 5: ``keep="best"`` ends with epoch 2's EMA weights,
    ``keep="last"`` with epoch 5's (those ``train_state.pt`` holds), and the summary says which."""
    losses = iter([3.0, 1.0, 2.0, 2.5, 2.2])
    monkeypatch.setattr(training, "_val_loss", lambda *a, **k: next(losses))
    res = train(_dataset(), tmp_path / keep, TINY, train_config=_cfg(epochs=5, ema_decay=0.9, keep=keep),
                progress=False)
    assert res.best_epoch == 2 and res.kept_epoch == (2 if keep == "best" else 5)
    final_ema = torch.load(tmp_path / keep / training.STATE_FILE, weights_only=False)["ema"]
    saved = _weights(load_checkpoint(tmp_path / keep))
    assert _same(saved, _weights(res.model))
    assert _same(saved, {k: final_ema[k] for k in saved}) == (keep == "last")   # the EMA moved after epoch 2
    assert read_config(tmp_path / keep)["extra"]["training"]["kept_epoch"] == res.kept_epoch


def test_resume_after_crash_equals_straight_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = _dataset()
    straight = train(ds, tmp_path / "straight", TINY, train_config=_cfg(ema_decay=0.9), progress=False)

    real_val = training._val_loss
    calls = {"n": 0}

    def crash_in_epoch_3(*args: Any, **kw: Any) -> float:
        calls["n"] += 1
        if calls["n"] == 3:  # epoch 3's steps ran, its state was never saved
            raise KeyboardInterrupt("simulated crash")
        return real_val(*args, **kw)

    monkeypatch.setattr(training, "_val_loss", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train(ds, tmp_path / "crashed", TINY, train_config=_cfg(ema_decay=0.9), progress=False)
    state = torch.load(tmp_path / "crashed" / training.STATE_FILE, weights_only=False)
    assert state["run"]["epoch"] == 2
    monkeypatch.setattr(training, "_val_loss", real_val)

    resumed = train(ds, tmp_path / "crashed", TINY, train_config=_cfg(ema_decay=0.9), resume=True,
                    progress=False)
    assert resumed.epochs_run == 4 and resumed.best_epoch == straight.best_epoch
    assert _same(_weights(resumed.model), _weights(straight.model))
    end_a = torch.load(tmp_path / "straight" / training.STATE_FILE, weights_only=False)
    end_b = torch.load(tmp_path / "crashed" / training.STATE_FILE, weights_only=False)
    assert _same(end_a["net"], end_b["net"]) and _same(end_a["ema"], end_b["ema"])
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in straight.history]


def test_never_reads_the_heldout_split(tmp_path: Path) -> None:
    ds = _dataset()

    class NoTest:
        name, train = ds.name, ds.train

        @property
        def test(self) -> np.ndarray:
            raise AssertionError("training touched the held-out split")

    train(NoTest(), tmp_path / "m", TINY, train_config=_cfg(epochs=1, warmup_epochs=0), progress=False)


def test_output_folder_rules(tmp_path: Path) -> None:
    ds, cfg = _dataset(), _cfg(epochs=1, warmup_epochs=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        train(ds, tmp_path / "full", TINY, train_config=cfg, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(ds, tmp_path / "none", TINY, train_config=cfg, resume=True, progress=False)
    train(ds, tmp_path / "m", TINY, train_config=cfg, progress=False)
    with pytest.raises(ValueError, match="cannot resume.*lr"):
        train(ds, tmp_path / "m", TINY, train_config=_cfg(epochs=1, warmup_epochs=0, lr=1e-2),
              resume=True, progress=False)
    with pytest.raises(ValueError, match="cannot resume.*model config"):
        train(ds, tmp_path / "m", {**TINY, "d_ff": 16}, train_config=cfg, resume=True, progress=False)
    train(ds, tmp_path / "m", TINY, train_config=cfg, overwrite=True, progress=False)
    assert (tmp_path / "full" / "x.txt").read_text() == "keep"


def test_time_budget_shrinks_schedule_and_stops(tmp_path: Path) -> None:
    res = train(_dataset(), tmp_path / "m", TINY, train_config=_cfg(epochs=50, max_minutes=1e-6),
                progress=False)
    assert res.epochs_run == 1 and res.planned_epochs == 1 and res.stopped_by_budget
    generous = train(_dataset(), tmp_path / "g", TINY, train_config=_cfg(epochs=3, max_minutes=30.0),
                     progress=False)
    assert generous.epochs_run == generous.planned_epochs == 3 and not generous.stopped_by_budget


def test_bad_inputs(tmp_path: Path) -> None:
    ds = _dataset()
    with pytest.raises(ValueError, match="tokens of width"):
        from pyfdc.core.score_net import ModelConfig

        train(ds, tmp_path / "a", ModelConfig(5, 2, d_model=16, n_layers=1, n_heads=2, d_ff=8),
              train_config=_cfg(), progress=False)
    with pytest.raises(TypeError, match="model_config"):
        train(ds, tmp_path / "b", 42, train_config=_cfg(), progress=False)
    with pytest.raises(ValueError, match="kind"):
        train(ds, tmp_path / "c", TINY, transform_kind="wavelet", train_config=_cfg(), progress=False)
    assert not any(tmp_path.iterdir())  # rejected before any folder is created


@pytest.mark.parametrize("kind", ["time", "chart"])
def test_other_token_layouts_train(tmp_path: Path, kind: str) -> None:
    res = train(_dataset(), tmp_path / kind, TINY, transform_kind=kind,
                train_config=_cfg(epochs=1, warmup_epochs=0), progress=False)
    assert res.model.transform.kind == kind and res.model.num_tokens == 16


def test_schedule_fitted_to_budget_ignores_slow_first_epoch() -> None:
    cfg = _cfg(epochs=100, warmup_epochs=20)
    run = {"epoch": 1, "planned_epochs": 100, "warmup_epochs": 20}
    _fit_schedule_to_budget(run, cfg, 10.0, [2.0], t_start=0.0)  # 2 s/epoch, 8 s left
    assert (run["planned_epochs"], run["warmup_epochs"]) == (5, 1)
    run["epoch"] = 2  # epoch 2 took 1 s: re-plan from epochs 2.. only -> 7 more
    _fit_schedule_to_budget(run, cfg, 10.0, [2.0, 3.0], t_start=0.0)
    assert (run["planned_epochs"], run["warmup_epochs"]) == (9, 2)
    _fit_schedule_to_budget(run, cfg, 1e6, [2.0, 3.0], t_start=0.0)
    assert run["planned_epochs"] == 100  # never beyond cfg.epochs


def test_schedule_follows_the_recent_pace() -> None:
    """Epochs that speed up (saves thin out as the validation loss stops improving) lengthen the horizon:
    the pace is read from the last PACE_WINDOW epochs, not from the whole run or its first epochs."""
    from pyfdc.training.state import PACE_WINDOW

    cfg = _cfg(epochs=1000, warmup_epochs=100)
    marks = [2.0 * (i + 1) for i in range(5)]  # epochs 1-5 at 2 s each
    marks += [marks[-1] + 1.0 * (i + 1) for i in range(PACE_WINDOW)]  # then 1 s each
    run = {"epoch": len(marks), "planned_epochs": 1000, "warmup_epochs": 100}
    _fit_schedule_to_budget(run, cfg, 100.0, marks, t_start=0.0)  # 20 s used, 80 s left at 1 s/epoch
    assert run["planned_epochs"] == len(marks) + 80
    run["epoch"] = 6  # after epoch 6: epochs 2-6 took 2, 2, 2, 2, 1 s -> 1.8 s/epoch, 89 s left
    _fit_schedule_to_budget(run, cfg, 100.0, marks[:6], t_start=0.0)
    assert run["planned_epochs"] == 6 + int((100.0 - 11.0) // 1.8)
    run["epoch"] = 50
    _fit_schedule_to_budget(run, cfg, 10.0, marks, t_start=0.0)  # over budget: never below the epochs run
    assert run["planned_epochs"] == 50


def test_truncated_train_state_is_a_clear_error(tmp_path: Path) -> None:
    cfg = _cfg(epochs=1, warmup_epochs=0)
    train(_dataset(), tmp_path / "m", TINY, train_config=cfg, progress=False)
    state = tmp_path / "m" / training.STATE_FILE
    state.write_bytes(state.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"train_state\.pt: cannot read training state"):
        train(_dataset(), tmp_path / "m", TINY, train_config=cfg, resume=True, progress=False)

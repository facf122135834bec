"""Per-position standardisation (``scaling="position"``): the fit, its smoothing and floor, exact round trips,
checkpoints, and that a token error lands scaled by each position's spread."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pyfdc.core.checkpoint import CheckpointError, _config_text, load_checkpoint
from pyfdc.data import Standardizer, load_dataset
from pyfdc.data.standardize import SD_FLOOR
from pyfdc.training.trainer import TrainConfig, train
from tinymodels import one_thread  # noqa: F401  (autouse fixture)

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "rff_dim": 8}


def _ramp(n: int, seed: int = 0, N: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``(x (n, N, 2), sd (N,))``: channel 0 spreads as 0.05 + t (t in [0, 1]) around a level of 3, with
    an exactly constant last 5 steps; channel 1 is white with sd 2."""
    rng = np.random.default_rng(seed)
    sd = 0.05 + np.linspace(0, 1, N)
    x = np.stack([3 + sd * rng.standard_normal((n, N)), 2 * rng.standard_normal((n, N))], axis=-1)
    x[:, -5:, 0] = 1.5
    return x, sd


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_is_per_step_mean_and_smoothed_sd(dtype: type) -> None:
    x, sd = _ramp(2000)
    x = x.astype(dtype)
    st = Standardizer.fit(x, per_position=True)
    assert st.positions == 64 and st.channels == 2 and st.mean.shape == st.std.shape == (64, 2)
    np.testing.assert_allclose(st.mean, x.astype(np.float64).mean(0), rtol=1e-12, atol=1e-12)
    # 2,000 series: a step's sd to ~1.6%, the moving average of a linear profile is the profile itself
    # (away from the ends, where the window is cut); constant steps are centred only
    np.testing.assert_allclose(st.std[4:55, 0], sd[4:55], rtol=0.05)
    np.testing.assert_allclose(st.std[:, 1], 2.0, rtol=0.05)
    assert (st.std[-5:, 0] == 1.0).all()
    z = st.transform(x)
    assert z.dtype == dtype and (z[:, -5:, 0] == 0).all()
    np.testing.assert_allclose(st.inverse(z), x, rtol=0, atol=1e-5 if dtype == np.float32 else 1e-12)
    zt = st.transform(torch.from_numpy(x))
    torch.testing.assert_close(zt, torch.from_numpy(z))


def test_smoothing_keeps_estimation_noise_out_of_the_scale() -> None:
    """36 series of stationary noise (BasicMotions' fit-split size): raw per-step sds scatter by ~12%; the
    fitted ones must be much flatter, or every sample would be modulated by that scatter."""
    x = np.random.default_rng(3).standard_normal((36, 100, 1))
    raw = x.std(axis=0)[:, 0]
    st = Standardizer.fit(x, per_position=True)
    assert raw.std() / raw.mean() > 0.08
    assert st.std[:, 0].std() / st.std[:, 0].mean() < 0.5 * raw.std() / raw.mean()


def test_floor_and_round_trip_through_a_dict() -> None:
    x, _ = _ramp(50)
    x[:, :10, 0] = 3 + 1e-9 * np.arange(50)[:, None]  # all but constant: floored, not divided by ~1e-9
    st = Standardizer.fit(x, per_position=True)
    np.testing.assert_allclose(st.std[:7, 0], SD_FLOOR * Standardizer.fit(x).std[0], rtol=1e-12)
    st2 = Standardizer.from_dict(json.loads(json.dumps(st.to_dict())))
    assert st2.positions == 64
    np.testing.assert_array_equal(st2.mean, st.mean)
    np.testing.assert_array_equal(st2.std, st.std)
    assert Standardizer.from_dict(Standardizer.fit(x).to_dict()).positions is None  # per channel stays so
    with pytest.raises(ValueError, match=r"\(\.\.\., 64, 2\)"):
        st.transform(x[:, :10])
    with pytest.raises(ValueError, match=r"\(n, N, M\)"):
        Standardizer.fit(x[0], per_position=True)
    with pytest.raises(ValueError, match="one shape"):
        Standardizer(np.zeros((2, 3, 4)), np.ones((2, 3, 4)))


def test_training_with_position_scaling_round_trips_and_pins(tmp_path: Path) -> None:
    ds = load_dataset("ecg")
    res = train(ds, tmp_path / "m", model_config=TINY, train_config=TrainConfig(epochs=1, warmup_epochs=0),
                progress=False, scaling="position")
    model = load_checkpoint(tmp_path / "m")
    assert model.scaling == "position" and model.meta["scaling"] == "position" and res.model.scaling == "position"
    assert model.scaler.positions == ds.train.shape[1]
    assert model.pins is not None and model.pins.pin.any()  # the beats' zero pad stays pinned
    x = torch.as_tensor(ds.train[:64], dtype=torch.float32)
    torch.testing.assert_close(model.tokens_to_data(model.data_to_tokens(x)), x, rtol=0, atol=1e-5)
    # where the training series agree, a token error comes back small: the change of the series under a
    # token perturbation is the perturbation's series scaled by each step's sd
    z = model.data_to_tokens(x[:8]).double()
    dz = 1e-3 * torch.randn(z.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    dx = (model.tokens_to_data(z + dz) - model.tokens_to_data(z))[..., 0]
    expect = model.transform.from_tokens(dz)[..., 0] * torch.as_tensor(model.scaler.std[:, 0])
    free = torch.as_tensor(~model.pins.pin[:, 0])
    torch.testing.assert_close(dx[:, free], expect[:, free], rtol=1e-6, atol=1e-9)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())  # a scaler for another length is refused
    cfg["standardizer"]["mean"] = cfg["standardizer"]["mean"][:-1]
    cfg["standardizer"]["std"] = cfg["standardizer"]["std"][:-1]
    (tmp_path / "m" / "config.json").write_text(_config_text(cfg))
    with pytest.raises(CheckpointError, match="per position"):
        load_checkpoint(tmp_path / "m")

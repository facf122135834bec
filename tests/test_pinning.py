"""Pinned coordinates: detection, the exact noise prediction on their subspace, exact restoration."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pyfdc.core.checkpoint import CheckpointError, _config_text, load_checkpoint, save_checkpoint
from pyfdc.data import load_dataset
from pyfdc.e2crf import E2CRFConfig
from pyfdc.core.model import DiffusionModel
from pyfdc.core.pinning import PinnedCoordinates, PinProjector
from pyfdc.sampling.sampler import Sampler
from pyfdc.core.score_net import ModelConfig, ScoreTransformer
from pyfdc.core.sde import VPSDE
from pyfdc.core.spectral import make_transform
from pyfdc.core.token_scaler import TokenScaler
from pyfdc.training.trainer import TrainConfig, train

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "rff_dim": 8}


def _padded(n: int, length: int = 20, m: int = 2, pad: int = 6, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, length, m))
    x[:, -pad:, :] = 0.25  # a constant pad
    x[:, 0, 1] = -1.0      # and a pinned start on channel 1
    return x


def test_fit_finds_the_pad_and_nothing_in_noise() -> None:
    pins = PinnedCoordinates.fit(_padded(30))
    assert pins is not None and pins.count == 6 * 2 + 1 and pins.pin[0, 1] and not pins.pin[0, 0]
    assert pins.values[-1, 0] == 0.25 and pins.values[0, 1] == -1.0
    assert PinnedCoordinates.fit(np.random.default_rng(0).normal(size=(30, 20, 2))) is None
    ecg = load_dataset("ecg")
    assert PinnedCoordinates.fit(ecg.train).count == 92  # the zero pad after each beat
    with pytest.raises(ValueError, match="n >= 2"):
        PinnedCoordinates.fit(ecg.train[:1])
    p = PinnedCoordinates.from_dict(pins.to_dict())
    assert np.array_equal(p.pin, pins.pin) and np.array_equal(p.values, pins.values)


@pytest.mark.parametrize("kind", ["freq", "time"])
def test_projector_gives_the_exact_noise_on_the_pinned_subspace(kind: str) -> None:
    x = torch.as_tensor(_padded(16), dtype=torch.float64)
    pins = PinnedCoordinates.fit(x.numpy())
    tr, sde = make_transform(kind, 20, 2), VPSDE()
    proj = PinProjector(tr, pins, sde).double()
    mask = tr.mask(dtype=torch.float64)
    z0 = tr.to_tokens(pins.remove(x))
    torch.testing.assert_close(proj.project(z0), torch.zeros_like(z0), rtol=0, atol=1e-12)  # Q x0 = 0
    eps = torch.randn(z0.shape, dtype=torch.float64) * mask
    for t in (1e-5, 1e-2, 0.5, 1.0):
        tt = torch.full((16,), t, dtype=torch.float64)
        a, s = sde.marginal(tt)
        zt = a[:, None, None] * z0 + s[:, None, None] * eps
        garbage = torch.randn_like(zt) * mask
        out = proj(garbage, zt, tt)
        torch.testing.assert_close(proj.project(out), proj.project(eps), rtol=0, atol=1e-9)  # exact on Q
        torch.testing.assert_close(out - proj.project(out), garbage - proj.project(garbage), rtol=0, atol=1e-12)
    # Q is an orthogonal projector
    y = torch.randn(3, tr.num_tokens, tr.token_dim, dtype=torch.float64) * mask
    torch.testing.assert_close(proj.project(proj.project(y)), proj.project(y), rtol=0, atol=1e-12)
    w = torch.randn_like(y) * mask
    torch.testing.assert_close((proj.project(y) * w).sum(), (y * proj.project(w)).sum(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["freq", "time", "chart"])
@pytest.mark.parametrize("n", [20, 21])
def test_the_compiled_projection_is_the_projection(kind: str, n: int) -> None:
    """Inside ``torch.compile`` ``Q`` runs as two matmuls (not the transform's FFT): same projection, to
    float32 rounding (the matrices are rounded once from float64; |Q y| ~ 1 here, so 1e-5 is ~100 ulp),
    with pins that differ by channel so a mixed-up channel order shows."""
    x = torch.as_tensor(_padded(16, n), dtype=torch.float64)
    pins = PinnedCoordinates.fit(x.numpy())
    assert not np.array_equal(pins.pin[:, 0], pins.pin[:, 1])
    tr = make_transform(kind, n, 2)
    proj = PinProjector(tr, pins, VPSDE())
    assert proj.maps.to_time is not None
    y = torch.randn(3, tr.num_tokens, tr.token_dim) * tr.mask()
    compiled = torch.compile(proj.project, fullgraph=True, dynamic=False)
    torch.testing.assert_close(compiled(y), proj.project(y), rtol=1e-5, atol=1e-5)
    q = proj.project(y)
    assert q.abs().max() > 0.1 and (q - y).abs().max() > 0.1   # Q is neither 0 nor the identity here


def _model(pins: PinnedCoordinates | None, kind: str = "freq") -> DiffusionModel:
    tr = make_transform(kind, 20, 2)
    torch.manual_seed(0)
    net = ScoreTransformer(ModelConfig(num_tokens=tr.num_tokens, token_dim=tr.token_dim, **TINY))
    return DiffusionModel(net, tr, pins=pins)


@pytest.mark.parametrize("sampler", ["em", "dpm2m", "e2crf"])
def test_every_sampler_returns_pinned_values_exactly(sampler: str) -> None:
    pins = PinnedCoordinates.fit(_padded(30))
    model = _model(pins)
    if sampler == "e2crf":
        x = Sampler(model, cache=E2CRFConfig(0.5)).sample(5, steps=12, batch_size=5, progress=False)
    else:
        x = Sampler(model, sampler).sample(5, steps=12, batch_size=5, progress=False)
    assert bool((x[:, -6:, :] == 0.25).all()) and bool((x[:, 0, 1] == -1.0).all())
    assert float(x[:, :-6, 0].std()) > 0  # the free coordinates are still sampled
    # without pins the same untrained net leaves the pad wherever the noise put it
    x_free = Sampler(_model(None), "em").sample(5, steps=12, batch_size=5, progress=False)
    assert float((x_free[:, -6:, :] - 0.25).abs().max()) > 0.1


def test_training_with_pins_spends_no_loss_on_them_and_checkpoints_them(tmp_path: Path) -> None:
    ds = load_dataset("ecg")
    train(ds, tmp_path / "m", model_config=TINY, train_config=TrainConfig(epochs=1, warmup_epochs=0),
          progress=False)
    model = load_checkpoint(tmp_path / "m")
    assert model.pins is not None and model.meta["pinned"] == 92 and model.meta["pinning"] == "auto"
    x = torch.as_tensor(ds.train[:32], dtype=torch.float32)
    z0 = model.data_to_tokens(x)
    t = torch.full((32,), 0.01)
    a, s = model.sde.marginal(t)
    eps = torch.randn_like(z0) * model.mask()
    with torch.no_grad():
        err = model.net(a[:, None, None] * z0 + s[:, None, None] * eps, t) - eps
    q = model.net.pin_projector.project(err)
    assert float(q.norm()) < 1e-3 * float(err.norm())  # float32 round-off only, at a 1/sigma = 100 gain
    torch.testing.assert_close(model.tokens_to_data(z0), x, rtol=0, atol=1e-5)
    off = train(ds, tmp_path / "off", model_config=TINY, pinning="off",
                train_config=TrainConfig(epochs=1, warmup_epochs=0), progress=False)
    assert off.model.pins is None and off.model.net.pin_projector is None
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["pins"]["pin"] = cfg["pins"]["pin"][:-1]
    cfg["pins"]["values"] = cfg["pins"]["values"][:-1]
    (tmp_path / "m" / "config.json").write_text(_config_text(cfg))  # re-signed, to reach the pins check
    with pytest.raises(CheckpointError, match="pins"):
        load_checkpoint(tmp_path / "m")
    save_checkpoint(tmp_path / "again", model)
    assert load_checkpoint(tmp_path / "again").pins.count == 92


def test_pins_and_token_scaling_do_not_mix() -> None:
    pins = PinnedCoordinates.fit(_padded(30))
    tr = make_transform("freq", 20, 2)
    net = ScoreTransformer(ModelConfig(num_tokens=tr.num_tokens, token_dim=tr.token_dim, **TINY))
    ts = TokenScaler(np.zeros((tr.num_tokens, tr.token_dim)), np.ones((tr.num_tokens, tr.token_dim)))
    with pytest.raises(ValueError, match="per-channel scaling"):
        DiffusionModel(net, tr, token_scaler=ts, pins=pins)
    with pytest.raises(ValueError, match="pinning must be one of"):
        train(load_dataset("ecg"), "/nonexistent/never", model_config=TINY, pinning="maybe")


def test_checkpoints_without_original_units_recover_them(tmp_path: Path) -> None:
    # pins written before 'original' existed held standardised values only; loading must not
    # restore those numbers as if they were in the data's units
    ds = load_dataset("ecg")
    train(ds, tmp_path / "m", model_config=TINY, train_config=TrainConfig(epochs=1, warmup_epochs=0),
          progress=False)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    del cfg["pins"]["original"]
    cfg.pop("config_sha256")  # as written before configs carried their checksum
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    model = load_checkpoint(tmp_path / "m")
    x = Sampler(model, "dpm2m").sample(2, steps=4, batch_size=2, progress=False)
    assert float(x[:, 95:].abs().max()) < 1e-6  # the zero pad, up to float64 round-off of mean/std

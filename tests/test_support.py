"""Support bounds: fitted ranges, the per-step clip of the denoised estimate, clamped samples."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pyfdc.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pyfdc.data import Standardizer
from pyfdc.e2crf import E2CRFConfig
from pyfdc.evaluation.front import model_fingerprint
from pyfdc.core.model import DiffusionModel
from pyfdc.core.pinning import PinnedCoordinates
from pyfdc.sampling.sampler import Sampler
from pyfdc.core.score_net import ModelConfig, ScoreTransformer
from pyfdc.core.sde import VPSDE
from pyfdc.core.spectral import make_transform
from pyfdc.core.support import SupportBounds, SupportClip
from pyfdc.core.token_scaler import TokenScaler
from tinymodels import one_thread  # noqa: F401  (autouse fixture)

N, M = 24, 2


def _data(n: int = 40, seed: int = 0) -> np.ndarray:
    """Series in [0, 1] on channel 0 and [-2, 3] on channel 1, with a constant pad."""
    rng = np.random.default_rng(seed)
    x = np.stack([rng.uniform(0, 1, (n, N)), rng.uniform(-2, 3, (n, N))], axis=-1)
    x[:, -5:, :] = 0.0
    return x


def _model(kind: str = "freq", scaling: str = "pins", seed: int = 0, out_gain: float = 1.0) -> DiffusionModel:
    x = _data()
    torch.manual_seed(seed)
    tr = make_transform(kind, N, M)
    cfg = ModelConfig(tr.num_tokens, tr.token_dim, d_model=16, n_layers=1, n_heads=2, d_ff=32, rff_dim=8)
    net = ScoreTransformer(cfg, tr.mask()).double().eval()
    with torch.no_grad():
        net.out_proj.weight.mul_(out_gain)
    st = Standardizer.fit(x)
    pins = ts = None
    if scaling == "pins":
        pins = PinnedCoordinates.fit(st.transform(x), original=x)
    elif scaling == "token":
        ts = TokenScaler.fit(tr.to_tokens(torch.as_tensor(st.transform(x))), tr.mask(dtype=torch.float64))
    return DiffusionModel(net, tr, VPSDE(), st, pins=pins, token_scaler=ts, bounds=SupportBounds.fit(x))


def test_bounds_fit_clamp_and_round_trip() -> None:
    x = _data()
    b = SupportBounds.fit(x)
    np.testing.assert_allclose(b.low, x.min(axis=(0, 1)))
    np.testing.assert_allclose(b.high, x.max(axis=(0, 1)))
    y = torch.tensor([[[-0.5, 9.0], [0.5, -7.0]]], dtype=torch.float64)
    got = b.clamp(y)
    assert got[0, 0, 0] == b.low[0] and got[0, 0, 1] == b.high[1] and got[0, 1, 0] == 0.5 and got[0, 1, 1] == b.low[1]
    again = SupportBounds.from_dict(json.loads(json.dumps(b.to_dict())))
    assert np.array_equal(again.low, b.low) and np.array_equal(again.high, b.high)


@pytest.mark.parametrize("bad, match", [
    (lambda: SupportBounds([0.0, 1.0], [1.0]), "same length"),
    (lambda: SupportBounds([2.0], [1.0]), "low <= high"),
    (lambda: SupportBounds([np.nan], [1.0]), "finite"),
    (lambda: SupportBounds.fit(np.zeros((3, 4))), "shape"),
    (lambda: SupportBounds.fit(np.full((3, 4, 1), np.inf)), "NaN/Inf"),
    (lambda: SupportBounds.from_dict({"low": [0.0]}), "'low' and 'high'"),
    (lambda: SupportBounds([0.0], [1.0]).clamp(torch.zeros(1, 4, 2)), "channels"),
])
def test_bad_bounds_are_refused(bad, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bad()


def test_model_refuses_bounds_for_other_channels() -> None:
    m = _model()
    with pytest.raises(ValueError, match="channels"):
        DiffusionModel(m.net, m.transform, m.sde, m.scaler, pins=m.pins, bounds=SupportBounds([0.0], [1.0]))


@pytest.mark.parametrize("kind", ["freq", "time"])
@pytest.mark.parametrize("scaling", ["pins", "channel", "token"])
def test_clip_moves_the_denoised_estimate_to_the_clamped_one(kind: str, scaling: str) -> None:
    """After the clip, the x0 implied by (z, eps) decodes to clamp(x0) exactly on free coordinates,
    and where x0 is inside the bounds eps is untouched."""
    model = _model(kind, scaling)
    clip = model.support_clip()
    assert isinstance(clip, SupportClip)
    mask = model.mask(torch.float64)
    g = torch.Generator().manual_seed(1)
    for t in (1e-3, 0.1, 0.7):
        tt = torch.full((5,), t, dtype=torch.float64)
        a, s = (v[:, None, None] for v in model.sde.marginal(tt))
        x0 = model.data_to_tokens(torch.as_tensor(_data(5, seed=2)))  # inside the bounds
        eps = torch.randn(x0.shape, generator=g, dtype=torch.float64) * mask
        z = a * x0 + s * eps
        torch.testing.assert_close(clip(eps, z, tt), eps, rtol=0, atol=1e-9)  # nothing to clip
        wide = x0 * 3.0 + 2.0 * mask * (torch.rand(x0.shape, generator=g, dtype=torch.float64) - 0.5)
        eps_bad = (z - a * wide) / s  # a prediction whose x0 is far outside the bounds
        new = clip(eps_bad, z, tt)
        x_new = model.tokens_to_data((z - s * new) / a)
        x_want = model.bounds.clamp(model.tokens_to_data(wide))
        torch.testing.assert_close(x_new, x_want, rtol=0, atol=1e-9)
        assert not torch.allclose(model.tokens_to_data(wide), x_want)  # the case did need clipping


def test_samplers_stay_inside_the_bounds_only_with_the_clip() -> None:
    """An untrained network with a loud head samples far outside the data's range; with the clip every
    sampler's output is inside it, and the per-step clip (not only the final clamp) is what keeps the
    solver's own final state there."""
    model = _model(out_gain=8.0)
    lo, hi = (torch.as_tensor(v) for v in (model.bounds.low, model.bounds.high))
    for method in ("em", "ddim", "dpm2m"):
        s = Sampler(model, method)
        model.clip = True
        x = s.sample(6, steps=20, batch_size=3, seed=0, progress=False)
        assert bool(((x >= lo) & (x <= hi)).all())
        raw = model.tokens_to_data(s.sample_tokens(6, steps=20, batch_size=3, seed=0, progress=False))
        overshoot_on = float(torch.maximum(raw - hi, lo - raw).clamp(min=0).max())
        model.clip = False
        free = s.sample(6, steps=20, batch_size=3, seed=0, progress=False)
        overshoot_off = float(torch.maximum(free - hi, lo - free).clamp(min=0).max())
        assert overshoot_off > 1.0, method                   # the unclipped sampler leaves the range
        assert overshoot_on < 0.1 * overshoot_off, method    # the per-step clip keeps the state near it
    model.clip = True


@pytest.mark.parametrize("cfg", [E2CRFConfig(0.5, ranking="energy"), E2CRFConfig(0.5)])
def test_e2crf_samples_are_clipped_too(cfg: E2CRFConfig) -> None:
    model = _model(out_gain=8.0)
    lo, hi = (torch.as_tensor(v) for v in (model.bounds.low, model.bounds.high))
    model.clip = True
    x = Sampler(model, cache=cfg).sample(4, steps=12, batch_size=4, progress=False)
    assert bool(((x >= lo) & (x <= hi)).all())
    model.clip = False
    y = Sampler(model, cache=cfg).sample(4, steps=12, batch_size=4, progress=False)
    assert bool(((y < lo) | (y > hi)).any())


def test_checkpoint_keeps_the_bounds_and_fingerprints_the_clip(tmp_path) -> None:
    model = _model()
    save_checkpoint(tmp_path / "ck", model)
    back = load_checkpoint(tmp_path / "ck")
    assert np.array_equal(back.bounds.low, model.bounds.low) and back.clip
    fp_on = model_fingerprint(back)
    back.clip = False
    assert model_fingerprint(back) != fp_on  # saved front runs of one are never reused for the other
    cfg_path = tmp_path / "ck" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["bounds"] = {"low": [1.0, 0.0], "high": [0.0, 1.0]}
    cfg.pop("config_sha256")  # a hand-made config without a checksum, to reach the bounds check
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="low <= high"):
        load_checkpoint(tmp_path / "ck")
    cfg.pop("bounds")  # written before support bounds: loads, samples unclipped
    cfg_path.write_text(json.dumps(cfg))
    old = load_checkpoint(tmp_path / "ck")
    assert old.bounds is None and old.support_clip() is None


def test_training_records_the_fit_split_range(tmp_path) -> None:
    from pyfdc.data.dataset import TimeSeriesDataset
    from pyfdc.training.trainer import TrainConfig, split_indices, train

    x = _data(30)
    x[3, 2, 0] = 5.0  # an extreme series; whether it is in the fit split decides the bound
    ds = TimeSeriesDataset(name="toy", train=x, test=_data(8, seed=3), meta={})
    cfg = TrainConfig(epochs=1, warmup_epochs=0, batch_size=8)
    train(ds, tmp_path / "m", model_config={"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "rff_dim": 8},
          train_config=cfg, progress=False)
    fit_idx, _ = split_indices(len(x), cfg.val_fraction, cfg.seed)
    b = load_checkpoint(tmp_path / "m").bounds
    fit = np.asarray(ds.train[fit_idx], dtype=np.float64)  # the dataset holds float32
    np.testing.assert_array_equal(b.low, fit.min(axis=(0, 1)))
    np.testing.assert_array_equal(b.high, fit.max(axis=(0, 1)))
    assert (b.high[0] == 5.0) == (3 in set(fit_idx.tolist()))

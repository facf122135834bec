"""Exact structure of the training data: per-series band limits, per-series normalisation and decimal value
grids, imposed on samples."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pyfdc.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pyfdc.core.exact_structure import BandLimit, ExactStructure, SeriesNorm, ValueGrid
from pyfdc.core.model import DiffusionModel
from pyfdc.core.pinning import PinnedCoordinates
from pyfdc.core.score_net import ModelConfig, ScoreTransformer
from pyfdc.core.sde import VPSDE
from pyfdc.core.spectral import make_transform
from pyfdc.core.support import SupportBounds
from pyfdc.data import Standardizer
from tinymodels import one_thread  # noqa: F401  (autouse fixture)


def _band_limited(n: int, N: int, M: int, seed: int = 0, decimals: int | None = 5,
                  dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """``(x (n, N, M), cutoff (n,))``: each series' spectrum is random up to its own cutoff bin (shared by
    its channels, between 1 and K - 3) and zero above, stored with ``decimals`` decimals in ``dtype``. In-band
    amplitudes stay well above zero (as in resampled recordings), so the data has a gap to cut at."""
    rng = np.random.default_rng(seed)
    k = N // 2 + 1
    cutoff = rng.integers(1, k - 2, n)
    amp = rng.uniform(0.5, 1.5, (n, k, M)) / (1 + np.arange(k))[None, :, None]
    spec = amp * np.exp(2j * np.pi * rng.uniform(size=(n, k, M)))
    spec[np.arange(k)[None, :] > cutoff[:, None]] = 0
    x = np.fft.irfft(spec, n=N, axis=1) * 10
    if decimals is not None:
        x = np.round(x, decimals)
    return x.astype(dtype), cutoff


@pytest.mark.parametrize("N", [24, 25])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_finds_the_band_limit_and_the_grid(N: int, dtype: type) -> None:
    x, _ = _band_limited(300, N, 3, decimals=4, dtype=dtype)
    found = ExactStructure.fit(x)
    assert found is not None and found.band_limit is not None
    assert found.grid.decimals == [4, 4, 4]       # the coarsest grid, not any finer one
    # tau: a quarter of the 1% quantile of the series' last in-band amplitudes, far above what storage leaves
    from pyfdc.core.exact_structure import _relative_amplitude

    a64 = x.astype(np.float64)
    amp = _relative_amplitude(a64, a64.std(axis=(0, 1)))
    edge = np.array([row[row >= 1e-3][-1] for row in amp])
    assert found.band_limit.tau == pytest.approx(0.25 * np.quantile(edge, 0.01), rel=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_data_without_the_structure_gets_none(dtype: type) -> None:
    rng = np.random.default_rng(1)
    walk = np.cumsum(rng.normal(size=(200, 32, 2)), axis=1).astype(dtype)   # full-band, off every grid
    assert ExactStructure.fit(walk) is None
    counts = rng.poisson(5.0, size=(200, 32, 2)).astype(dtype)            # integers: on the grid 10^0 only
    found = ExactStructure.fit(counts)
    assert found is not None and found.band_limit is None and found.grid.decimals == [0, 0]
    mixed = walk.copy()
    mixed[..., 1] = np.round(mixed[..., 1], 2)
    assert ValueGrid.fit(mixed).decimals == [None, 2]


def test_full_band_series_mixed_in_turn_the_band_limit_off() -> None:
    """Most series band-limited, a few full-band ones whose upper bins sit between zero and tau: cutting at
    tau would change real series, so there is no band limit; flat series do not spoil a real one."""
    x, _ = _band_limited(100, 32, 1, decimals=None, dtype=np.float64)
    assert BandLimit.fit(x) is not None
    k = np.arange(17)
    rng = np.random.default_rng(5)
    spec = rng.normal(size=(10, 17)) * 0.3 / (1 + k) ** 1.5 * np.exp(2j * np.pi * rng.uniform(size=(10, 17)))
    full = np.fft.irfft(spec, n=32, axis=1)[..., None] * 10
    assert BandLimit.fit(np.concatenate([x, full])) is None
    # constant series near zero: band-limited too, and their small DC is no band edge
    flat = np.full((5, 32, 1), 0.003 * x.std())
    assert BandLimit.fit(np.concatenate([x, flat])) is not None


def test_a_few_band_limited_series_or_no_gap_are_not_enough() -> None:
    x, _ = _band_limited(100, 32, 1, decimals=None)
    assert BandLimit.fit(x) is not None
    rng = np.random.default_rng(2)
    few = x.copy()
    few[:60] = rng.normal(size=(60, 32, 1))      # most series full-band: no band limit
    assert BandLimit.fit(few) is None
    faint = x.copy()
    faint[:5] *= 1e-3                            # some series' in-band content near zero: no clear gap
    assert BandLimit.fit(faint) is None


@pytest.mark.parametrize("N", [24, 25])
def test_apply_cuts_each_series_above_its_own_cutoff(N: int) -> None:
    """Data plus noise far below tau: the bins above each series' own cutoff come out exactly zero and every
    bin up to it (the cutoff bin included) keeps the noisy value, whatever the other series' cutoffs."""
    x, cutoff = _band_limited(40, N, 2, seed=3, decimals=None, dtype=np.float64)
    limit = BandLimit.fit(x)
    noisy = torch.as_tensor(x) + 1e-4 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0),
                                                    dtype=torch.float64)
    out = limit.apply(noisy)
    assert out.dtype == noisy.dtype and out.shape == noisy.shape
    spec_in, spec_out = torch.fft.rfft(noisy, dim=1), torch.fft.rfft(out, dim=1)
    bins = torch.arange(spec_in.shape[1])[None, :, None]
    inside = bins <= torch.as_tensor(cutoff)[:, None, None]
    torch.testing.assert_close(spec_out * inside, spec_in * inside, rtol=0, atol=1e-10)
    assert float((spec_out * ~inside).abs().max()) < 1e-10
    assert float((spec_in * ~inside).abs().max()) > 1e-4   # the noise was there to be removed


def test_value_grid_rounds_each_channel_to_its_own_decimals() -> None:
    grid = ValueGrid([2, None, 0])
    x = torch.tensor([[[0.123456, 0.123456, 2.6], [-1.005001, 7.77777, -0.4]]], dtype=torch.float32)
    out = grid.apply(x)
    want = torch.tensor([[[0.12, 0.123456, 3.0], [-1.01, 7.77777, 0.0]]], dtype=torch.float32)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, want, rtol=0, atol=0)


@pytest.mark.parametrize("ddof", [0, 1])
def test_series_norm_is_found_and_imposed_per_channel(ddof: int) -> None:
    rng = np.random.default_rng(4)
    raw = np.cumsum(rng.normal(size=(60, 30, 3)), axis=1)
    x = raw.copy()
    two = raw[..., :2]
    x[..., :2] = (two - two.mean(axis=1, keepdims=True)) / two.std(axis=1, ddof=ddof, keepdims=True)
    x = x.astype(np.float32)                      # stored as float32, like the archives
    found = ExactStructure.fit(x)
    assert found.norm.ddof == [ddof, ddof, None] and found.band_limit is None and found.grid is None
    assert f"every series z-normalised (sd with ddof {ddof}; 2 of 3 channels)" in found.describe()
    samples = torch.as_tensor(1.7 * raw[:5] + 0.3, dtype=torch.float32)
    out = found.apply(samples).double()
    torch.testing.assert_close(out[..., :2].mean(dim=1), torch.zeros(5, 2, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(out[..., :2].std(dim=1, correction=ddof), torch.ones(5, 2, dtype=torch.float64),
                               rtol=0, atol=1e-6)
    assert torch.equal(out[..., 2], samples[..., 2].double())   # the channel that is not normalised: untouched
    assert SeriesNorm.fit(x[..., :1] * np.float32(1.001)) is None          # sd 1.001: not normalised
    assert SeriesNorm.fit(x[..., :1] + np.float32(1e-3)) is None           # mean 1e-3: not normalised


def test_checkpoint_keeps_the_series_norm(tmp_path) -> None:
    rng = np.random.default_rng(6)
    raw = np.cumsum(rng.normal(size=(80, 24, 1)), axis=1)
    x = ((raw - raw.mean(axis=1, keepdims=True)) / raw.std(axis=1, ddof=1, keepdims=True)).astype(np.float32)
    model = _model(x)
    assert model.exact.norm.ddof == [1]
    save_checkpoint(tmp_path / "ck", model)
    back = load_checkpoint(tmp_path / "ck")
    assert back.exact.to_dict() == model.exact.to_dict()
    z = torch.randn(6, back.num_tokens, back.token_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    back.bounds = None                             # the clamp, which comes last, would win where it acts
    out = back.decode_samples(z)
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(6, 1, dtype=torch.float64), rtol=0, atol=1e-9)
    torch.testing.assert_close(out.std(dim=1, correction=1), torch.ones(6, 1, dtype=torch.float64), rtol=0, atol=1e-9)


def test_structures_written_before_the_norm_load() -> None:
    back = ExactStructure.from_dict({"band_limit": None, "grid": {"decimals": [2]}})
    assert back.norm is None and back.grid.decimals == [2]


@pytest.mark.parametrize("bad, match", [
    (lambda: SeriesNorm([2]), "None, 0 or 1"),
    (lambda: BandLimit([0.0], 0.1), "positive finite sd"),
    (lambda: BandLimit([1.0], -1.0), "tau"),
    (lambda: ValueGrid([12]), "0..9"),
    (lambda: ExactStructure(band_limit=BandLimit([1.0, 1.0], 0.1), grid=ValueGrid([3])), "channels"),
    (lambda: ExactStructure(), "at least one part"),
    (lambda: ValueGrid([2.7]), "0..9"),
    (lambda: SeriesNorm([0.5]), "None, 0 or 1"),
    (lambda: ExactStructure.from_dict({"grid": None}), "band_limit"),
])
def test_bad_structures_are_refused(bad, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bad()


def _model(x: np.ndarray, pins: bool = False) -> DiffusionModel:
    torch.manual_seed(0)
    n, N, M = x.shape
    tr = make_transform("freq", N, M)
    cfg = ModelConfig(tr.num_tokens, tr.token_dim, d_model=16, n_layers=1, n_heads=2, d_ff=32, rff_dim=8)
    net = ScoreTransformer(cfg, tr.mask()).double().eval()
    st = Standardizer.fit(x)
    pin = PinnedCoordinates.fit(st.transform(x), original=x) if pins else None
    return DiffusionModel(net, tr, VPSDE(), st, pins=pin, bounds=SupportBounds.fit(x), exact=ExactStructure.fit(x))


def test_decoded_samples_carry_the_structure_only_with_clip_on() -> None:
    x, _ = _band_limited(200, 24, 2, decimals=4)
    x[:, :, 1] = 0.25           # a pinned channel: stays exact through the band limit
    model = _model(x, pins=True)
    assert model.pins is not None and model.exact.grid.decimals == [4, 2] and model.exact.band_limit is not None
    # the data's own tokens plus a sampler-like residual: the band limit has bins to cut
    z = model.data_to_tokens(torch.as_tensor(x[:8], dtype=torch.float64))
    z = z + 1e-3 * torch.randn(z.shape, dtype=z.dtype, generator=torch.Generator().manual_seed(1)) * model.mask(z.dtype)
    on = model.decode_samples(z)
    # on the grid, to the float32 rounding of the bounds the clamp may put a value at (the data are float32)
    torch.testing.assert_close(on, torch.round(on * 1e4) / 1e4, rtol=0, atol=1e-7)
    assert bool((on[:, :, 1] == 0.25).all())                          # pins exact
    model.clip = False
    off = model.decode_samples(z)
    assert float((off - torch.round(off * 1e4) / 1e4).abs().max()) > 1e-5
    assert float((model.exact.band_limit.apply(off) - off).abs().max()) > 1e-4
    want = model.bounds.clamp(model._restore_pins(model.exact.apply(off)))
    torch.testing.assert_close(on, want, rtol=0, atol=0)


def test_checkpoint_keeps_the_structure(tmp_path) -> None:
    x, _ = _band_limited(200, 24, 2, decimals=4)
    model = _model(x)
    save_checkpoint(tmp_path / "ck", model)
    back = load_checkpoint(tmp_path / "ck")
    assert back.exact.to_dict() == model.exact.to_dict()
    assert back.exact.describe() == "a per-series band limit and values on a 1e-4 grid (2 of 2 channels)"
    from pyfdc.evaluation.front import model_fingerprint

    with_it = model_fingerprint(back)
    back.exact = None
    assert model_fingerprint(back) != with_it   # saved front runs of one are never reused for the other
    cfg_path = tmp_path / "ck" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("config_sha256")   # a hand-made config without a checksum, to reach the field checks
    cfg["exact"] = {"band_limit": None, "grid": {"decimals": [3]}}
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="1 channels"):
        load_checkpoint(tmp_path / "ck")
    cfg.pop("exact")           # written before it: loads without
    cfg_path.write_text(json.dumps(cfg))
    assert load_checkpoint(tmp_path / "ck").exact is None


def test_training_fits_the_structure_on_the_fit_split(tmp_path) -> None:
    from pyfdc.data.dataset import TimeSeriesDataset
    from pyfdc.training.trainer import TrainConfig, split_indices, train

    x, _ = _band_limited(60, 24, 2, decimals=3)
    ds = TimeSeriesDataset(name="toy", train=x, test=x[:8], meta={})
    cfg = TrainConfig(epochs=1, warmup_epochs=0, batch_size=16)
    train(ds, tmp_path / "m", model_config={"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "rff_dim": 8},
          train_config=cfg, progress=False)
    fit_idx, _ = split_indices(len(x), cfg.val_fraction, cfg.seed)
    assert load_checkpoint(tmp_path / "m").exact.to_dict() == ExactStructure.fit(ds.train[fit_idx]).to_dict()


def test_cli_train_says_so_and_samples_carry_it(tmp_path, capsys) -> None:
    """``pyfdc train --data`` on band-limited data stored with 4 decimals names what it found; ``pyfdc sample``
    records it and its samples are on the grid; ``--clip off`` samples are not."""
    from pyfdc.cli import SAMPLE_INFO_FILE, SAMPLES_FILE, main

    x, _ = _band_limited(120, 24, 2, decimals=4)
    np.save(tmp_path / "limited.npy", x)
    assert main(["train", "--tiny", "--data", str(tmp_path / "limited.npy"), "--epochs", "1", "--out",
                 str(tmp_path / "m"), "--no-progress"]) == 0
    cap = capsys.readouterr()
    assert "a per-series band limit and values on a 1e-4 grid (2 of 2 channels)" in cap.out + cap.err
    for clip in ("auto", "off"):
        out = tmp_path / f"s_{clip}"
        assert main(["sample", "--checkpoint", str(tmp_path / "m"), "--num-samples", "4", "--steps", "5",
                     "--clip", clip, "--out", str(out), "--no-progress"]) == 0
        s = np.load(out / SAMPLES_FILE).astype(np.float64)
        info = json.loads((out / SAMPLE_INFO_FILE).read_text())
        off_grid = float(np.abs(s - np.round(s, 4)).max())
        if clip == "auto":
            assert info["exact_structure"]["grid"]["decimals"] == [4, 4] and off_grid < 1e-6
        else:
            assert info["exact_structure"] is None and off_grid > 1e-6

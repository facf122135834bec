"""The time-domain head (``ModelConfig.time_head``): neutral when fresh, local in time, saved and loaded,
applied on every E2-CRF step, and absent from configs that do not use it."""
from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from pyfdc.core.checkpoint import load_checkpoint, save_checkpoint
from pyfdc.core.model import DiffusionModel
from pyfdc.core.score_net import ModelConfig, ScoreTransformer
from pyfdc.core.sde import VPSDE
from pyfdc.core.spectral import make_transform
from pyfdc.core.time_head import DILATIONS, KERNEL
from pyfdc.e2crf import E2CRFConfig
from pyfdc.sampling.sampler import Sampler
from pyfdc.training.config import resolve_model_config
from tinymodels import head_model, one_thread  # noqa: F401

N = 48
REACH = sum(d * (KERNEL // 2) for d in DILATIONS)   # how far one input step reaches: 16


@pytest.mark.parametrize("kind", ["freq", "time"])
def test_a_fresh_head_leaves_the_prediction_unchanged(kind: str) -> None:
    model = head_model(kind, trained_head=False)
    z, t = torch.randn(3, model.num_tokens, model.token_dim), torch.rand(3)
    with torch.no_grad():
        with_head = model.net(z, t)
        head, model.net.time_head = model.net.time_head, None
        without = model.net(z, t)
        model.net.time_head = head
    assert torch.equal(with_head, without)


@pytest.mark.parametrize("kind", ["freq", "time", "chart"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_head_is_local_in_time(kind: str, dtype: torch.dtype) -> None:
    """A change of the noisy series at one time step moves the head's correction only within its reach."""
    model = head_model(kind)
    model.net.to(dtype)
    tr, head = model.transform, model.net.time_head
    x = torch.randn(1, N, 2, dtype=dtype)
    eps = torch.zeros(1, model.num_tokens, model.token_dim, dtype=dtype)
    feat = model.net.time_features(torch.tensor([0.3], dtype=dtype))

    def correction(series: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return tr.from_tokens(head(eps, tr.to_tokens(series), feat, model.net.mask))   # (1, N, M)

    j = 20
    bumped = x.clone()
    bumped[0, j, 0] += 1.0
    moved = (correction(bumped) - correction(x)).abs().amax(dim=(0, 2))
    tol = 1e-5 if dtype == torch.float32 else 1e-12   # the isometry's round trip, not the head
    assert moved[j] > 100 * tol
    far = [i for i in range(N) if abs(i - j) > REACH]
    assert far and float(moved[far].max()) < tol, moved


def test_head_models_save_and_load(tmp_path: Path) -> None:
    model = head_model()
    save_checkpoint(tmp_path / "ck", model)
    back = load_checkpoint(tmp_path / "ck")
    assert back.net.config == model.net.config and back.net.time_head is not None
    z, t = torch.randn(2, model.num_tokens, model.token_dim), torch.rand(2)
    with torch.no_grad():
        assert torch.equal(back.net(z, t), model.net(z, t))


def test_configs_without_a_head_are_written_as_before(tmp_path: Path) -> None:
    """No head: the saved model config has no head fields (old readers, old digests); old configs load."""
    from tinymodels import tiny_model

    save_checkpoint(tmp_path / "ck", tiny_model())
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert "time_head" not in cfg["model_config"] and "series_channels" not in cfg["model_config"]
    assert load_checkpoint(tmp_path / "ck").net.time_head is None


def test_the_head_must_match_the_series_channels() -> None:
    tr = make_transform("freq", N, 2)
    net = ScoreTransformer(ModelConfig(tr.num_tokens, tr.token_dim, d_model=32, n_layers=1, n_heads=4, d_ff=32,
                                       rff_dim=16, time_head=8, series_channels=3))
    with pytest.raises(ValueError, match="time head is for M = 3 channels"):
        DiffusionModel(net, tr, VPSDE())
    with pytest.raises(ValueError, match="time_head needs series_channels"):
        ModelConfig(4, 2, time_head=8)
    with pytest.raises(ValueError, match="time_head must be an int >= 0"):
        ModelConfig(4, 2, time_head=-1, series_channels=1)


def test_a_preset_with_a_head_gets_the_data_channels() -> None:
    cfg = resolve_model_config({"preset": "small", "time_head": 16}, 25, 4, channels=2)
    small = ModelConfig.small(25, 4)
    assert (cfg.d_model, cfg.n_layers, cfg.time_head, cfg.series_channels) == (small.d_model, small.n_layers, 16, 2)
    with pytest.raises(ValueError, match="preset must be one of"):
        resolve_model_config({"preset": "huge"}, 25, 4)


@pytest.mark.parametrize("cached_output", ["features", "gaussian"])
def test_every_e2crf_step_applies_the_head(cached_output: str) -> None:
    """Recomputing every token, E2-CRF must give uncached EM's samples: a step that skipped the head (or served
    a cached prediction without it) would not."""
    model = head_model()
    if cached_output == "gaussian":
        from pyfdc.core.token_moments import TokenMoments

        model.token_moments = TokenMoments.fit(torch.randn(64, model.num_tokens, model.token_dim) * model.mask())
    cfg = E2CRFConfig(budget=1.0, cached_output=cached_output, R=1000)
    ref = Sampler(model, "em").sample(3, steps=12, seed=4, progress=False)
    got = Sampler(model, "em", cache=cfg).sample(3, steps=12, seed=4, progress=False)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)   # float32 reassociation of the cached step
    with torch.no_grad():
        model.net.time_head.out.weight.mul_(3.0)   # the head's weights matter on the cached path
    moved = Sampler(model, "em", cache=cfg).sample(3, steps=12, seed=4, progress=False)
    assert (moved - got).abs().max() > 1e-3


def test_cli_trains_a_model_with_a_head(tmp_path: Path) -> None:
    from pyfdc import cli

    out = tmp_path / "ck"
    assert cli.main(["train", "--tiny", "--epochs", "1", "--time-head", "4", "--out", str(out), "--no-progress"]) == 0
    model = load_checkpoint(out)
    assert model.net.config.time_head == 4 and model.net.config.series_channels == model.transform.m
    assert model.net.time_head is not None and model.net.time_head.maps.transform is model.transform


def _recipe_model_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> object:
    """The model config ``pyfdc train ARGS`` hands to training (training itself replaced by a stand-in)."""
    import pyfdc.training.trainer as trainer
    from pyfdc import cli

    seen: dict[str, object] = {}

    class Done:
        model = types.SimpleNamespace(exact=None)   # what the CLI reads of the trained model

        def summary(self) -> dict[str, object]:
            return {"epochs_run": 1, "wall_seconds": 0.0, "best_val_loss": 0.0, "best_epoch": 1, "kept_epoch": 1}

    def fake_train(dataset: object, out: object, model_config: object = None, **kw: object) -> Done:
        seen["model_config"] = model_config
        return Done()

    monkeypatch.setattr(trainer, "train", fake_train)
    assert cli.main(["train", "--epochs", "1", "--no-progress", *args]) == 0
    return seen["model_config"]


def _series(kind: str, s: int = 64, n: int = 96, m: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "white":
        return rng.normal(size=(s, n, m))
    u = np.linspace(0, 1, n)[None, :, None]
    return np.sin(2 * np.pi * (1 + rng.integers(0, 3, (s, 1, m))) * u + rng.uniform(0, 6, (s, 1, m))) * \
        rng.uniform(0.5, 2, (s, 1, m)) + 0.01 * rng.normal(size=(s, n, m))


@pytest.mark.parametrize("domain, data, head", [("freq", "ecg", True), ("time", "ecg", False),
                                                ("freq", "smooth", True), ("freq", "white", False)])
def test_the_default_recipe_picks_the_head_from_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str], domain: str, data: str,
                                                         head: bool) -> None:
    """``pyfdc train`` without --time-head: the head on frequency models of smooth data (the embedded ECG, slow
    sines), none on data whose energy is mostly high-frequency, none on time-domain models; said in one line."""
    from pyfdc.training.config import RECIPE_TIME_HEAD

    args = ["--domain", domain, "--out", str(tmp_path / "ck")]
    if data != "ecg":
        np.save(tmp_path / "x.npy", _series(data))
        args += ["--data", str(tmp_path / "x.npy")]
    got = _recipe_model_config(tmp_path, monkeypatch, *args)
    assert got == {"preset": "small", **({"time_head": RECIPE_TIME_HEAD} if head else {})}
    said = capsys.readouterr()
    assert ("time head 32" if head else "no time head") in said.out + said.err


def test_an_explicit_width_and_a_resumed_run_keep_their_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "x.npy", _series("white"))
    data = ["--data", str(tmp_path / "x.npy")]
    assert _recipe_model_config(tmp_path, monkeypatch, *data, "--time-head", "8", "--out", str(tmp_path / "a")) == \
        {"preset": "small", "time_head": 8}
    run = tmp_path / "b"   # trained with a head before: resuming it keeps the head, whatever the rule says now
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model_config": {"time_head": 16}}))
    assert _recipe_model_config(tmp_path, monkeypatch, *data, "--resume", "--out", str(run)) == \
        {"preset": "small", "time_head": 16}


def test_high_frequency_fraction() -> None:
    """White noise puts ~half its energy in the upper half of the spectrum (17 of 32 non-DC bins at N = 64),
    slow sines almost none; scale and offset per channel do not matter."""
    from pyfdc.training.config import high_frequency_fraction

    white = _series("white", s=200, n=64)
    assert high_frequency_fraction(white) == pytest.approx(17 / 32, abs=0.03)
    smooth = _series("smooth", n=64)
    assert high_frequency_fraction(smooth) < 0.01
    assert high_frequency_fraction(smooth * [1e3, 1e-3] + [5e4, -2]) == pytest.approx(high_frequency_fraction(smooth))
    assert high_frequency_fraction(smooth[..., 0]) == pytest.approx(high_frequency_fraction(smooth[..., :1]))
    with pytest.raises(ValueError, match="N >= 2"):
        high_frequency_fraction(np.zeros((3, 1, 1)))


@pytest.mark.parametrize("kind", ["freq", "time", "chart"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_head_maps_tokens_by_matrices_as_the_transform_does(kind: str, dtype: torch.dtype) -> None:
    """The head's token <-> time matrices are the transform itself (odd N too), and follow ``.to(dtype)``;
    with the matrices dropped it falls back to the transform's FFT, to rounding."""
    from pyfdc.core.time_maps import MATMUL_MAX_N

    for n in (N, N + 1):
        tr = make_transform(kind, n, 3)
        cfg = ModelConfig(tr.num_tokens, tr.token_dim, d_model=16, n_layers=1, n_heads=2, d_ff=32, rff_dim=8,
                          time_head=4, series_channels=3)
        model = DiffusionModel(ScoreTransformer(cfg, tr.mask()).eval(), tr, VPSDE())
        model.net.to(dtype)
        head = model.net.time_head
        assert head.maps.to_time.dtype == dtype and n <= MATMUL_MAX_N
        x = torch.randn(2, n, 3, dtype=dtype)
        y = tr.to_tokens(x)
        tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-12}
        torch.testing.assert_close(head.maps.series(y), tr.from_tokens(y).transpose(1, 2), **tol)
        torch.testing.assert_close(head.maps.tokens(x.transpose(1, 2)), y, **tol)
        with torch.no_grad():
            head.out.weight.normal_(0, 0.1)
            z, t = torch.randn(2, tr.num_tokens, tr.token_dim, dtype=dtype) * model.net.mask, torch.rand(2, dtype=dtype)
            by_matrix = model.net(z, t)
            head.maps.to_time = head.maps.from_time = None
            torch.testing.assert_close(model.net(z, t), by_matrix, **tol)


@pytest.mark.parametrize("dilation", DILATIONS)
@pytest.mark.parametrize("batch", [1, 3])
def test_the_compiled_convolution_is_the_convolution(dilation: int, batch: int) -> None:
    """The matmul form the head uses inside ``torch.compile`` equals ``nn.Conv1d`` (values and gradients)."""
    from pyfdc.core.time_head import _conv

    torch.manual_seed(dilation)
    conv = torch.nn.Conv1d(6, 8, KERNEL, dilation=dilation, padding=dilation * (KERNEL // 2)).double()
    h = torch.randn(batch, 6, 37, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(_conv(h, conv, dilation), conv(h), atol=1e-12, rtol=1e-12)
    g1, = torch.autograd.grad(conv(h).square().sum(), h)
    g2, = torch.autograd.grad(_conv(h, conv, dilation).square().sum(), h)
    torch.testing.assert_close(g2, g1, atol=1e-12, rtol=1e-12)


def test_a_compiled_network_with_a_head_matches_eager() -> None:
    """Inside ``torch.compile`` the head's convolutions and the attention take their written-out forms; the
    network's output stays the eager one to float32 rounding."""
    model = head_model("freq")
    net = model.net
    z, t = torch.randn(2, model.num_tokens, model.token_dim) * net.mask, torch.rand(2)
    with torch.no_grad():
        want = net(z, t)
        got = torch.compile(net, fullgraph=True, dynamic=False)(z, t)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)

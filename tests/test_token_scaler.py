"""Per-token standardisation: exact inverse, unit variance on free coordinates, pinned zeros, checkpoints."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pyfdc.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pyfdc.data import load_dataset
from pyfdc.core.token_scaler import TokenScaler
from pyfdc.training.trainer import TrainConfig, train

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "rff_dim": 8}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fit_transform_inverse(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    scale = torch.logspace(0, -3, 12, dtype=torch.float64)[:, None]  # power falling like a spectrum
    z = torch.randn(500, 12, 2, generator=g, dtype=torch.float64) * scale + 0.3
    mask = torch.ones(12, 2)
    mask[0, 1] = 0
    z[:, 0, 1] = 0
    ts = TokenScaler.fit(z, mask)
    y = ts.transform(z.to(dtype))
    free = mask.bool()
    torch.testing.assert_close(y.std(0)[free].double(), torch.ones(23, dtype=torch.float64), rtol=1e-3, atol=1e-3)
    assert bool((y[:, 0, 1] == 0).all())  # pinned: mean 0, std 1
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(ts.inverse(y).double(), z, rtol=tol, atol=tol)
    assert TokenScaler.from_dict(ts.to_dict()).to_dict() == ts.to_dict()


def test_constant_coordinates_are_only_centred_and_errors_are_clear() -> None:
    z = torch.zeros(10, 3, 1)
    z[:, 0, 0] = torch.randn(10)
    z[:, 1, 0] = 5.0  # constant (e.g. a pad's frequency content)
    ts = TokenScaler.fit(z, torch.ones(3, 1))
    assert ts.std[1, 0] == 1.0 and ts.mean[1, 0] == 5.0
    with pytest.raises(ValueError, match=r"= \(\.\.\., 3, 1\), got \(4, 5, 1\)"):
        ts.transform(torch.zeros(4, 5, 1))
    with pytest.raises(ValueError, match="NaN"):
        TokenScaler.fit(torch.full((3, 3, 1), float("nan")), torch.ones(3, 1))
    with pytest.raises(ValueError, match="std finite and > 0"):
        TokenScaler(np.zeros((3, 1)), np.zeros((3, 1)))


def test_token_scaled_training_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    ds = load_dataset("ecg")
    res = train(ds, tmp_path / "m", model_config=TINY, train_config=TrainConfig(epochs=1, warmup_epochs=0),
                progress=False, scaling="token")
    model = load_checkpoint(tmp_path / "m")
    assert model.scaling == "token" and model.meta["scaling"] == "token" and res.model.scaling == "token"
    x = torch.as_tensor(ds.train[:64], dtype=torch.float32)
    z = model.data_to_tokens(x)
    # fitted on the fit split, so the train tokens are near unit variance on every frequency
    sd = z.std(0)[model.mask() > 0]
    assert 0.5 < float(sd.median()) < 1.5 and float(sd.max()) < 3
    torch.testing.assert_close(model.tokens_to_data(z), x, rtol=0, atol=1e-5)
    # a config whose scaler does not fit the transform is refused at load
    import json

    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["token_scaler"]["mean"] = cfg["token_scaler"]["mean"][:-1]
    cfg["token_scaler"]["std"] = cfg["token_scaler"]["std"][:-1]
    from pyfdc.core.checkpoint import _config_text

    (tmp_path / "m" / "config.json").write_text(_config_text(cfg))  # re-signed, to reach the scaler check
    with pytest.raises(CheckpointError, match="token_scaler"):
        load_checkpoint(tmp_path / "m")
    save_checkpoint(tmp_path / "again", model)  # and a loaded model saves again
    assert load_checkpoint(tmp_path / "again").scaling == "token"


def test_unknown_scaling_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scaling must be one of"):
        train(load_dataset("ecg"), tmp_path / "m", model_config=TINY, scaling="wavelet")
    assert not (tmp_path / "m").exists()

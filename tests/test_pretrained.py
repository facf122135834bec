"""The checkpoint shipped for the demo loads from the installed package and samples real series."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.data import load_dataset
from pyfdc.pretrained import PRETRAINED, pretrained_path
from pyfdc.sampling.sampler import Sampler


def test_shipped_checkpoint_matches_embedded_ecg() -> None:
    model = load_checkpoint(pretrained_path("ecg_small_freq"))
    ds = load_dataset("ecg")
    assert model.transform.kind == "freq"
    assert (model.transform.n, model.transform.m) == (ds.length, ds.channels)
    # Its standardizer was fitted on the embedded train split: the channel mean must match the
    # train fit minus the validation part (a different dataset would be far off).
    assert model.scaler is not None
    mean = float(np.asarray(model.scaler.to_dict()["mean"]).ravel()[0])
    assert abs(mean - float(ds.train.mean())) < 0.05 * float(ds.train.std())


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_checkpoint_samples(name: str) -> None:
    torch.set_num_threads(1)
    model = load_checkpoint(pretrained_path(name))
    x = Sampler(model, "ddim").sample(4, steps=8, batch_size=4, seed=0, progress=False)
    assert x.shape == (4, 187, 1)
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_checkpoint_pins_the_zero_pad(name: str) -> None:
    # the embedded beats end in an exact zero pad; the shipped model pins it, so its samples do too
    model = load_checkpoint(pretrained_path(name))
    ds = load_dataset("ecg")
    assert model.pins is not None and model.pins.count == 92
    x = Sampler(model, "dpm2m").sample(3, steps=6, batch_size=3, seed=0, progress=False)
    assert bool((x[:, 95:, :] == float(ds.train[0, -1, 0])).all())


def test_unknown_pretrained_name() -> None:
    with pytest.raises(ValueError, match="unknown pretrained checkpoint"):
        pretrained_path("nope")


def test_cli_takes_a_shipped_name_where_no_folder_has_it(tmp_path, monkeypatch) -> None:
    from pyfdc.cli.args import checkpoint_dir

    monkeypatch.chdir(tmp_path)
    assert checkpoint_dir("ecg_small_time") == PRETRAINED["ecg_small_time"]
    (tmp_path / "ecg_small_time").mkdir()  # a folder of that name wins
    assert checkpoint_dir("ecg_small_time") == tmp_path.joinpath("ecg_small_time").relative_to(tmp_path)
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="shipped: ecg_paper_freq, ecg_small_freq, ecg_small_time"):
        checkpoint_dir("ecg_smal_freq")  # a misspelled name lists the shipped ones
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(argparse.ArgumentTypeError, match="is a file; --checkpoint takes a checkpoint folder"):
        checkpoint_dir("weights.bin")


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_checkpoint_keeps_the_training_range(name: str) -> None:
    # its bounds are the range of the split it was fitted on, and its samples stay inside them
    from pyfdc.training.trainer import split_indices

    model = load_checkpoint(pretrained_path(name))
    ds = load_dataset("ecg")
    tc = model.meta["extra"]["training"]["train_config"]
    fit_idx, _ = split_indices(len(ds.train), tc["val_fraction"], tc["seed"])
    fit = np.asarray(ds.train[fit_idx], dtype=np.float64)
    assert model.bounds is not None and model.clip
    np.testing.assert_array_equal(model.bounds.low, fit.min(axis=(0, 1)))
    np.testing.assert_array_equal(model.bounds.high, fit.max(axis=(0, 1)))
    x = Sampler(model, "dpm2m").sample(3, steps=6, batch_size=3, seed=0, progress=False)
    assert float(x.min()) >= model.bounds.low[0] and float(x.max()) <= model.bounds.high[0]
    # its token moments are those of the same split's tokens (the fit split, never validation)
    z = model.data_to_tokens(torch.as_tensor(ds.train[fit_idx], dtype=torch.float32)).double()
    assert model.token_moments is not None
    np.testing.assert_allclose(model.token_moments.mean, z.mean(0).numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(model.token_moments.var, z.var(0, unbiased=False).numpy(), rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_what_a_shipped_checkpoint_keeps_is_for_its_weights(name: str) -> None:
    """Shipped calibrations and auto choices are read, never re-made (the installation is not written to):
    each must belong to the shipped weights, or a retrained model would sample with another's choices."""
    from pyfdc.core.model import weights_fingerprint
    from pyfdc.e2crf.calibrate import CANDIDATE_SET, DEFAULT_TARGETS, SHADOW_STATISTICS, Calibration
    from pyfdc.evaluation.auto import AUTO_RULES, AutoChoice

    folder = pretrained_path(name) / "calibrations"
    kept = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not kept:
        pytest.skip(f"{name} ships no calibrations")
    mid = weights_fingerprint(load_checkpoint(pretrained_path(name)))
    for path in kept:
        loaded = AutoChoice.load(path) if path.name.startswith("auto-") else Calibration.load(path)
        assert loaded.model_id == mid, f"{path} was made for other weights"
        if isinstance(loaded, AutoChoice):  # made under today's rules, or every user would re-make it on first use
            assert loaded.rules == AUTO_RULES, f"{path} was made under older rules"
        else:
            assert loaded.statistics == SHADOW_STATISTICS and loaded.targets == DEFAULT_TARGETS, \
                f"{path} was made with an older gate"
            assert loaded.candidate_set == CANDIDATE_SET, f"{path} was made from an older candidate list"

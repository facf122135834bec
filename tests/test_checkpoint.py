"""Checkpoint round trip and every rejection path (truncated, corrupt, mismatched, wrong version)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save

from pyfdc.core.checkpoint import (CONFIG_FILE, CheckpointError, _config_text, load_checkpoint, weights_path,
                              read_config, save_checkpoint, update_checkpoint_extra)
from pyfdc.data import Standardizer
from pyfdc.core.model import DiffusionModel
from pyfdc.core.score_net import ModelConfig, ScoreTransformer
from pyfdc.core.sde import VPSDE
from pyfdc.core.spectral import make_transform


def _model(kind: str = "freq", n: int = 16, m: int = 2) -> DiffusionModel:
    torch.manual_seed(0)
    tr = make_transform(kind, n, m)
    net = ScoreTransformer(ModelConfig(tr.num_tokens, tr.token_dim, d_model=16, n_layers=2, n_heads=2, d_ff=32))
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(20, n, m)).astype(np.float32)
    return DiffusionModel(net, tr, VPSDE(beta_max=19.0), Standardizer.fit(x), meta={"dataset": "synth"})


def _rehash(folder: Path) -> None:
    """Make config.json agree with a hand-edited weights file (to reach the deeper checks)."""
    import hashlib

    cfg = json.loads((folder / CONFIG_FILE).read_text())
    cfg["weights_sha256"] = hashlib.sha256(weights_path(folder).read_bytes()).hexdigest()
    (folder / CONFIG_FILE).write_text(_config_text(cfg))


@pytest.mark.parametrize("kind", ["freq", "time", "chart"])
def test_round_trip_is_exact(tmp_path: Path, kind: str) -> None:
    model = _model(kind)
    save_checkpoint(tmp_path, model, {"training": {"best_epoch": 3, "loss": float("nan")}})
    loaded = load_checkpoint(tmp_path)
    for k, v in model.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[k], v), k
    assert loaded.transform == model.transform and loaded.sde == model.sde
    np.testing.assert_array_equal(loaded.standardizer.mean, model.standardizer.mean)
    np.testing.assert_array_equal(loaded.standardizer.std, model.standardizer.std)
    z = torch.randn(3, model.num_tokens, model.token_dim) * model.mask()
    t = torch.rand(3)
    with torch.no_grad():
        assert torch.equal(loaded.eps(z, t), model.net.eval()(z, t))
    assert loaded.meta["dataset"] == "synth"
    cfg = read_config(tmp_path)
    assert cfg["extra"]["training"] == {"best_epoch": 3, "loss": None}  # NaN stored as JSON null
    assert cfg["transform"] == {"kind": kind, "n": 16, "m": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_FILE, weights_path(tmp_path).name])  # no temp files


def test_resave_and_update_extra(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "a", _model(), {"x": 1})
    update_checkpoint_extra(tmp_path / "a", {"y": 2})
    assert read_config(tmp_path / "a")["extra"] == {"x": 1, "y": 2}
    loaded = load_checkpoint(tmp_path / "a")
    save_checkpoint(tmp_path / "b", loaded, {})  # load-time annotations must not leak into meta
    assert "checkpoint" not in read_config(tmp_path / "b")["meta"]
    load_checkpoint(tmp_path / "b")


def test_checkpoint_error_is_value_error() -> None:
    assert issubclass(CheckpointError, ValueError)


def test_truncated_weights(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _model(), {})
    w = weights_path(tmp_path)
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"model-[0-9a-f]{16}\.safetensors.*(truncated|corrupt)"):
        load_checkpoint(tmp_path)


def test_corrupt_safetensors_even_with_matching_hash(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _model(), {})
    weights_path(tmp_path).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{notjson")
    _rehash(tmp_path)
    with pytest.raises(CheckpointError, match=r"model-[0-9a-f]{16}\.safetensors: corrupt safetensors"):
        load_checkpoint(tmp_path)


def test_missing_key(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _model(), {})
    tensors = load_file(weights_path(tmp_path))
    del tensors["out_proj.weight"]
    weights_path(tmp_path).write_bytes(save(tensors))
    _rehash(tmp_path)
    with pytest.raises(CheckpointError, match=r"missing keys \['out_proj.weight'\]"):
        load_checkpoint(tmp_path)


def test_shape_mismatch(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _model(), {})
    cfg = json.loads((tmp_path / CONFIG_FILE).read_text())
    cfg["model_config"]["d_ff"] = 48
    (tmp_path / CONFIG_FILE).write_text(_config_text(cfg))
    with pytest.raises(CheckpointError, match=r"shape mismatch.*ff1\.weight"):
        load_checkpoint(tmp_path)


def test_transform_and_model_config_disagree(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _model(), {})
    cfg = json.loads((tmp_path / CONFIG_FILE).read_text())
    cfg["transform"]["n"] = 20  # N' = 11 tokens, but the net was built for 9
    (tmp_path / CONFIG_FILE).write_text(_config_text(cfg))
    with pytest.raises(CheckpointError, match="9 tokens"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(("field", "value", "pattern"), [
    ("format_version", 99, "format version 99 is not supported"),
    ("format", "something-else", "not a pyfdc checkpoint"),
    ("sde", {"beta_min": -1.0, "beta_max": 20.0, "t_eps": 1e-5}, "invalid field"),
])
def test_bad_config_fields(tmp_path: Path, field: str, value: object, pattern: str) -> None:
    save_checkpoint(tmp_path, _model(), {})
    cfg = json.loads((tmp_path / CONFIG_FILE).read_text())
    cfg[field] = value
    (tmp_path / CONFIG_FILE).write_text(_config_text(cfg))
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(tmp_path)


def test_missing_and_truncated_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    save_checkpoint(tmp_path, _model(), {})
    text = (tmp_path / CONFIG_FILE).read_text()
    (tmp_path / CONFIG_FILE).write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match=r"config\.json: corrupt or truncated JSON"):
        load_checkpoint(tmp_path)
    (tmp_path / CONFIG_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: missing"):
        load_checkpoint(tmp_path)
    save_checkpoint(tmp_path, _model(), {})
    weights_path(tmp_path).unlink()
    with pytest.raises(CheckpointError, match=r"model-[0-9a-f]{16}\.safetensors: missing"):
        load_checkpoint(tmp_path)


def test_weights_from_another_save_are_rejected(tmp_path: Path) -> None:
    a, b = _model(), _model()
    with torch.no_grad():
        b.net.out_proj.weight.add_(1.0)
    save_checkpoint(tmp_path / "a", a, {})
    save_checkpoint(tmp_path / "b", b, {})
    weights_path(tmp_path / "a").write_bytes(weights_path(tmp_path / "b").read_bytes())
    with pytest.raises(CheckpointError, match="do not match the SHA-256"):
        load_checkpoint(tmp_path / "a")


def test_replacing_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save killed after its weights but before its config leaves the old model loadable; a
    finished save leaves exactly the new model (one weights file)."""
    import pyfdc.core.checkpoint as ck

    a, b = _model(), _model()
    with torch.no_grad():
        b.net.out_proj.weight.add_(1.0)
    save_checkpoint(tmp_path, a, {"which": "a"})

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ck, "atomic_write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, b, {"which": "b"})
    monkeypatch.undo()
    assert len(list(tmp_path.glob("*.safetensors"))) == 2          # the new weights are there, uncommitted
    loaded = load_checkpoint(tmp_path)
    assert loaded.meta["extra"]["which"] == "a"
    assert torch.equal(loaded.net.out_proj.weight, a.net.out_proj.weight)
    save_checkpoint(tmp_path, b, {"which": "b"})
    assert [p.name for p in tmp_path.glob("*.safetensors")] == [weights_path(tmp_path).name]
    assert torch.equal(load_checkpoint(tmp_path).net.out_proj.weight, b.net.out_proj.weight)


def test_train_overwrite_keeps_the_old_checkpoint_until_replaced(tmp_path: Path) -> None:
    from pyfdc.training.trainer import _prepare_out_dir

    save_checkpoint(tmp_path, _model(), {"which": "old"})
    (tmp_path / "train_state.pt").write_bytes(b"old state")
    _prepare_out_dir(tmp_path, resume=False, overwrite=True)       # what a new run does first
    assert not (tmp_path / "train_state.pt").exists()
    assert load_checkpoint(tmp_path).meta["extra"]["which"] == "old"


def _edit(folder: Path, fn) -> None:
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    fn(cfg)
    (folder / CONFIG_FILE).write_text(_config_text(cfg))


@pytest.mark.parametrize("edit,match", [
    (lambda c: c["transform"].update(n=14), r"does not match the weights: the saved coordinate mask"),
    (lambda c: c["transform"].update(n="15"), r"transform.n must be an integer, got '15'"),
    (lambda c: c["transform"].update(n=15.9), r"transform.n must be an integer, got 15.9"),
    (lambda c: c["model_config"].pop("d_model"), r"model_config is missing \['d_model'\]"),
    (lambda c: c["standardizer"].update(mean=[0.0, 0.0], std=[1.0, 1.0]), r"standardizer has 2 channels, transform.m = 1"),
    (lambda c: c["sde"].update(beta_max="20"), r"sde.beta_max must be a number"),
    (lambda c: c.update(weights_file="../x.safetensors"), r"weights_file must be a .safetensors file name"),
])
def test_config_fields_are_checked_not_coerced(tmp_path: Path, edit, match) -> None:
    tr = make_transform("freq", 15, 1)
    torch.manual_seed(0)
    net = ScoreTransformer(ModelConfig(tr.num_tokens, tr.token_dim, d_model=16, n_layers=1, n_heads=2, d_ff=16,
                                       rff_dim=8), tr.mask())
    x = np.random.default_rng(0).normal(size=(10, 15, 1)).astype(np.float32)
    save_checkpoint(tmp_path, DiffusionModel(net, tr, VPSDE(), Standardizer.fit(x)), {})
    load_checkpoint(tmp_path)
    _edit(tmp_path, edit)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("device,match", [("mps", "is not supported"), ("cuda:7", "CUDA"), ("bogus", "not a torch device")])
def test_unknown_devices_are_one_line_errors(tmp_path: Path, device: str, match: str) -> None:
    from pyfdc.training.trainer import TrainConfig

    save_checkpoint(tmp_path, _model(), {})
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path, map_location=device)
    with pytest.raises(ValueError, match=f"TrainConfig.device: .*{match}"):
        TrainConfig(device=device)


def test_float16_weights_halve_the_file_and_load_as_float32(tmp_path: Path) -> None:
    model = _model()
    save_checkpoint(tmp_path / "f32", model)
    save_checkpoint(tmp_path / "f16", model, weights_dtype="float16")
    raw = load_file(weights_path(tmp_path / "f16"))
    params = {n for n, _ in model.net.named_parameters()}
    assert all(raw[k].dtype == torch.float16 for k in params)
    assert all(raw[k].dtype == torch.float32 for k in raw if k not in params)  # buffers stay exact
    assert weights_path(tmp_path / "f16").stat().st_size < 0.6 * weights_path(tmp_path / "f32").stat().st_size
    back = load_checkpoint(tmp_path / "f16")
    assert json.loads((tmp_path / "f16" / CONFIG_FILE).read_text())["weights_dtype"] == "float16"
    for k, v in model.net.state_dict().items():
        got = back.net.state_dict()[k]
        assert got.dtype == torch.float32
        want = v.to(torch.float16).float() if k in params else v
        assert torch.equal(got, want), k
    with pytest.raises(ValueError, match="weights_dtype"):
        save_checkpoint(tmp_path / "bad", model, weights_dtype="bf16")


def test_config_edits_are_refused_and_legacy_configs_load(tmp_path: Path) -> None:
    # an edited config.json (N 16 -> 17) would draw another length from a 16-trained network
    save_checkpoint(tmp_path, _model(), {})
    text = (tmp_path / CONFIG_FILE).read_text()
    cfg = json.loads(text)
    cfg["transform"]["n"] += 1
    (tmp_path / CONFIG_FILE).write_text(json.dumps(cfg, indent=2))
    with pytest.raises(CheckpointError, match="edited after it was saved"):
        load_checkpoint(tmp_path)
    legacy = json.loads(text)
    legacy.pop("config_sha256")  # written before configs carried their checksum: still loads
    (tmp_path / CONFIG_FILE).write_text(json.dumps(legacy))
    load_checkpoint(tmp_path)
    update_checkpoint_extra(tmp_path, {"note": "x"})  # every rewrite signs the config again
    assert "config_sha256" in read_config(tmp_path) and load_checkpoint(tmp_path).meta["extra"]["note"] == "x"

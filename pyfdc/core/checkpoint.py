"""Checkpoints: a folder with a weights file (safetensors) and ``config.json`` (everything else).

``config.json`` holds the format tag and version, the pyfdc version, the model config, the SDE,
the token transform (kind, N, M), the standardizer, the dataset name, free-form extras (the
training summary), the weights file's name and its SHA-256. Saving writes the weights under a new,
content-addressed name (``model-<sha256[:16]>.safetensors``), then the config (atomically: temp
file + rename), then deletes the previous weights. The config rename is the single commit point:
a kill at any moment leaves a folder that loads either the old model or the new one, never a mix.
Weights that do not match the recorded hash (truncated, corrupt) are rejected with
:class:`CheckpointError`. Folders written before content addressing name ``model.safetensors``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import torch

from pyfdc._device import check_device
from pyfdc._io import atomic_write_bytes, atomic_write_text, crash_point

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "read_config", "weights_path",
           "update_checkpoint_extra", "WEIGHTS_FILE", "CONFIG_FILE", "FORMAT", "FORMAT_VERSION"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "pyfdc-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("format", "format_version", "model_config", "sde", "transform", "standardizer",
             "weights_sha256")


class CheckpointError(ValueError):
    """A checkpoint folder is missing, truncated, corrupt or inconsistent with its config."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_safe(obj: Any) -> Any:
    """Round-trip through JSON, turning numpy scalars/arrays and non-finite floats into plain JSON."""
    def default(o: Any) -> Any:
        if hasattr(o, "tolist"):
            return o.tolist()
        if dataclasses.is_dataclass(o):
            return dataclasses.asdict(o)  # type: ignore[arg-type]
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"checkpoint extra value of type {type(o).__name__} is not JSON-serialisable")

    def clean(o: Any) -> Any:
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    return clean(json.loads(json.dumps(obj, default=default)))


def _model_config_dict(cfg: Any) -> dict[str, Any]:
    if hasattr(cfg, "to_dict"):
        return dict(cfg.to_dict())
    return dataclasses.asdict(cfg)


WEIGHT_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16}


WEIGHTS_NAME = re.compile(r"model-[0-9a-f]{16}\.safetensors")


def save_checkpoint(directory: str | Path, model: Any, extra: dict[str, Any] | None = None,
                    weights_dtype: str = "float32") -> Path:
    """Write ``model`` (a :class:`~pyfdc.core.model.DiffusionModel`) into ``directory``; return it.

    ``extra`` is stored as-is (JSON) under the config's ``"extra"`` key, e.g. a training summary.
    ``weights_dtype="float16"`` stores the trainable parameters in half precision (half the file;
    buffers such as the time features' frequencies stay float32); loading casts them back to the
    network's float32. Existing checkpoint files in ``directory`` are replaced atomically.
    """
    from safetensors.torch import save as st_save

    import pyfdc

    if weights_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weights_dtype must be one of {sorted(WEIGHT_DTYPES)}, got {weights_dtype!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    params = {name for name, _ in model.net.named_parameters()}
    # Clone: safetensors refuses shared/non-contiguous storage; cpu so checkpoints are portable.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.net.state_dict().items()}
    for k in params:
        tensors[k] = tensors[k].to(WEIGHT_DTYPES[weights_dtype])
    blob = st_save(tensors, metadata={"format": FORMAT})
    transform = model.transform
    meta = {k: v for k, v in (getattr(model, "meta", None) or {}).items()
            if k not in ("checkpoint", "extra")}  # load-time annotations, not model facts
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "pyfdc_version": pyfdc.__version__,
        "model_config": _model_config_dict(model.net.config),
        "sde": model.sde.to_dict(),
        "transform": {"kind": transform.kind, "n": transform.n, "m": transform.m},
        "standardizer": None if model.standardizer is None else model.standardizer.to_dict(),
        "token_scaler": None if getattr(model, "token_scaler", None) is None else model.token_scaler.to_dict(),
        "pins": None if getattr(model, "pins", None) is None else model.pins.to_dict(),
        "bounds": None if getattr(model, "bounds", None) is None else model.bounds.to_dict(),
        "token_moments": None if getattr(model, "token_moments", None) is None else model.token_moments.to_dict(),
        "exact": None if getattr(model, "exact", None) is None else model.exact.to_dict(),
        "dataset": meta.get("dataset"),
        "meta": meta,
        "extra": extra or {},
        "weights_sha256": _sha256(blob),
        "weights_dtype": weights_dtype,
    }
    wname = f"model-{config['weights_sha256'][:16]}.safetensors"
    config["weights_file"] = wname
    text = _config_text(config)
    atomic_write_bytes(out / wname, blob)
    crash_point("weights-written")
    atomic_write_text(out / CONFIG_FILE, text)              # commit: from here on the new model loads
    crash_point("config-committed")
    for old in out.iterdir():                              # only pyfdc's own weight files, never another tool's
        if WEIGHTS_NAME.fullmatch(old.name) and old.name != wname:
            old.unlink(missing_ok=True)
    return out


def _require(section: Any, keys: Any, name: str) -> None:
    if not isinstance(section, dict):
        raise ValueError(f"{name} must be an object, got {section!r}")
    missing = [k for k in keys if k not in section]
    if missing:
        raise ValueError(f"{name} is missing {missing}")


def weights_path(directory: str | Path) -> Path:
    """The weights file a checkpoint folder's config commits to."""
    folder = Path(directory)
    config = read_config(folder)
    name = config.get("weights_file", WEIGHTS_FILE)
    if not isinstance(name, str) or name != Path(name).name or not name.endswith(".safetensors"):
        raise CheckpointError(f"{folder / CONFIG_FILE}: weights_file must be a .safetensors file name in the "
                              f"folder, got {name!r}")
    return folder / name


def read_config(directory: str | Path) -> dict[str, Any]:
    """Read and validate ``config.json`` of a checkpoint folder (no weights loaded)."""
    folder = Path(directory)
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; {folder} is not a pyfdc checkpoint folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated JSON ({exc})") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pyfdc checkpoint config (format != {FORMAT!r})")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported by pyfdc "
            f"(expects {FORMAT_VERSION}; written by pyfdc {config.get('pyfdc_version')!r})")
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise CheckpointError(f"{path}: missing fields {missing}")
    if "config_sha256" in config and config["config_sha256"] != _config_digest(config):
        raise CheckpointError(f"{path}: edited after it was saved (its contents no longer match its config_sha256); "
                              "the model would not match its description: restore the file or retrain")
    return config


def _config_digest(config: dict[str, Any]) -> str:
    """SHA-256 of the config's canonical JSON without its own ``config_sha256`` field."""
    body = {k: v for k, v in config.items() if k != "config_sha256"}
    return _sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def _config_text(config: dict[str, Any]) -> str:
    """``config.json``'s text with ``config_sha256`` set, computed on exactly what a reader parses back."""
    safe = json.loads(json.dumps(_json_safe(config)))
    safe.pop("config_sha256", None)
    safe["config_sha256"] = _config_digest(safe)
    return json.dumps(safe, indent=2) + "\n"


def update_checkpoint_extra(directory: str | Path, extra: dict[str, Any]) -> None:
    """Merge ``extra`` into an existing checkpoint's ``extra`` (config.json rewritten atomically)."""
    config = read_config(directory)
    config["extra"] = {**config.get("extra", {}), **extra}
    atomic_write_text(Path(directory) / CONFIG_FILE, _config_text(config))


def update_checkpoint_token_moments(directory: str | Path, moments: Any) -> None:
    """Record ``moments`` (:class:`~pyfdc.core.token_moments.TokenMoments` of the fit split's tokens) in an
    existing checkpoint, e.g. one written before training recorded them (config.json rewritten atomically)."""
    config = read_config(directory)
    tr = config["transform"]
    want = (int(config["model_config"]["num_tokens"]), int(config["model_config"]["token_dim"]))
    if tuple(moments.shape) != want:
        raise ValueError(f"token moments are {tuple(moments.shape)}, the checkpoint's {tr['kind']!r} tokens are {want}")
    config["token_moments"] = moments.to_dict()
    atomic_write_text(Path(directory) / CONFIG_FILE, _config_text(config))


def _read_weights(folder: Path, config: dict[str, Any]) -> tuple[dict[str, torch.Tensor], Path]:
    """``(tensors, path)``: the weights file ``config`` commits to, checked against its SHA-256 and parsed."""
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    cfg_path, w_path = folder / CONFIG_FILE, weights_path(folder)
    if not w_path.is_file():
        raise CheckpointError(f"{w_path}: missing (config.json is present)")
    blob = w_path.read_bytes()
    if _sha256(blob) != config["weights_sha256"]:
        raise CheckpointError(
            f"{w_path}: contents do not match the SHA-256 recorded in {cfg_path} "
            f"(truncated, corrupt, or from another save; {len(blob)} bytes)")
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{w_path}: corrupt safetensors file ({exc})") from exc
    return tensors, w_path


@dataclasses.dataclass(frozen=True)
class _ModelFields:
    """The parts of a :class:`~pyfdc.core.model.DiffusionModel` a config describes (everything but the weights)."""

    transform: Any          # pyfdc.core.spectral.TokenTransform for (n, m)
    mcfg: Any               # pyfdc.core.score_net.ModelConfig
    sde: Any                # pyfdc.core.sde.VPSDE
    standardizer: Any       # pyfdc.data.Standardizer (M channels) or None
    token_scaler: Any       # pyfdc.core.token_scaler.TokenScaler (num_tokens, token_dim) or None
    pins: Any               # pyfdc.core.pinning.PinnedCoordinates (n, m) or None
    bounds: Any             # pyfdc.core.support.SupportBounds (M channels) or None
    token_moments: Any      # pyfdc.core.token_moments.TokenMoments or None
    exact: Any              # pyfdc.core.exact_structure.ExactStructure or None


def _check_field_types(config: dict[str, Any]) -> None:
    """The transform, model config and SDE sections have their keys, and integers/numbers where needed."""
    from pyfdc.core.score_net import ModelConfig

    tr = config["transform"]
    _require(tr, ("kind", "n", "m"), "transform")
    _require(config["model_config"], [f.name for f in dataclasses.fields(ModelConfig)
                                      if f.name not in ModelConfig.OPTIONAL_FIELDS], "model_config")
    _require(config["sde"], ("beta_min", "beta_max", "t_eps"), "sde")
    for key in ("n", "m"):
        if isinstance(tr[key], bool) or not isinstance(tr[key], int):
            raise ValueError(f"transform.{key} must be an integer, got {tr[key]!r}")
    for key, value in config["sde"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"sde.{key} must be a number, got {value!r}")


def _parse_model_fields(config: dict[str, Any]) -> _ModelFields:
    """The config's model fields, each checked against the transform; raises KeyError/TypeError/ValueError.

    The data statistics added over time (token scaler, pins, bounds, token moments, exact structure) are ``None`` when a
    checkpoint written before them lacks them.
    """
    from pyfdc.data import Standardizer
    from pyfdc.core.exact_structure import ExactStructure
    from pyfdc.core.pinning import PinnedCoordinates
    from pyfdc.core.score_net import ModelConfig
    from pyfdc.core.sde import VPSDE
    from pyfdc.core.spectral import make_transform
    from pyfdc.core.support import SupportBounds
    from pyfdc.core.token_moments import TokenMoments
    from pyfdc.core.token_scaler import TokenScaler

    _check_field_types(config)
    tr = config["transform"]
    transform = make_transform(tr["kind"], tr["n"], tr["m"])
    mcfg = ModelConfig.from_dict(config["model_config"])
    sde = VPSDE.from_dict(config["sde"])
    std_cfg = config["standardizer"]
    standardizer = None if std_cfg is None else Standardizer.from_dict(std_cfg)
    if standardizer is not None and standardizer.channels != tr["m"]:
        raise ValueError(f"standardizer has {standardizer.channels} channels, transform.m = {tr['m']}")
    ts_cfg = config.get("token_scaler")  # absent in checkpoints written before per-token scaling
    token_scaler = None if ts_cfg is None else TokenScaler.from_dict(ts_cfg)
    pins_cfg = config.get("pins")  # absent in checkpoints written before pinning
    pins = None if pins_cfg is None else PinnedCoordinates.from_dict(pins_cfg)
    if pins is not None and "original" not in pins_cfg and standardizer is not None:
        # written before pins kept original units: recover them from the standardised values
        pins = PinnedCoordinates(pins.pin, pins.values, standardizer.inverse(pins.values[None])[0])
    if pins is not None and pins.shape != (transform.n, transform.m):
        raise ValueError(f"pins are for (N, M) = {pins.shape}, transform is ({transform.n}, {transform.m})")
    bounds_cfg = config.get("bounds")  # absent in checkpoints written before support bounds
    bounds = None if bounds_cfg is None else SupportBounds.from_dict(bounds_cfg)
    if bounds is not None and bounds.channels != transform.m:
        raise ValueError(f"bounds are for {bounds.channels} channels, transform.m = {transform.m}")
    tm_cfg = config.get("token_moments")  # absent in checkpoints written before token moments
    token_moments = None if tm_cfg is None else TokenMoments.from_dict(tm_cfg)
    ex_cfg = config.get("exact")  # absent in checkpoints written before it
    exact = None if ex_cfg is None else ExactStructure.from_dict(ex_cfg)
    if exact is not None and exact.channels != transform.m:
        raise ValueError(f"exact structure is for {exact.channels} channels, transform.m = {transform.m}")
    if token_scaler is not None and token_scaler.shape != (transform.num_tokens, transform.token_dim):
        raise ValueError(f"token_scaler is {token_scaler.shape}, transform gives "
                         f"({transform.num_tokens}, {transform.token_dim})")
    return _ModelFields(transform=transform, mcfg=mcfg, sde=sde, standardizer=standardizer,
                        token_scaler=token_scaler, pins=pins, bounds=bounds, token_moments=token_moments,
                        exact=exact)


def _model_fields(config: dict[str, Any], cfg_path: Path) -> _ModelFields:
    """:func:`_parse_model_fields` with its errors as :class:`CheckpointError`, and the model config's token
    shape checked against the transform's."""
    try:
        fields = _parse_model_fields(config)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path}: invalid field ({type(exc).__name__}: {exc})") from exc
    mcfg, transform = fields.mcfg, fields.transform
    if (mcfg.num_tokens, mcfg.token_dim) != (transform.num_tokens, transform.token_dim):
        raise CheckpointError(
            f"{cfg_path}: model config expects {mcfg.num_tokens} tokens of width {mcfg.token_dim}, "
            f"transform {config['transform']} gives {transform.num_tokens} x {transform.token_dim}")
    return fields


def _load_net(fields: _ModelFields, tensors: dict[str, torch.Tensor], tr: dict[str, Any], cfg_path: Path,
              w_path: Path) -> torch.nn.Module:
    """A :class:`~pyfdc.core.score_net.ScoreTransformer` of ``fields.mcfg`` holding ``tensors`` (on the CPU), after
    checking their keys, shapes and coordinate mask; the caller's global RNG is left untouched."""
    from pyfdc.core.score_net import ScoreTransformer

    with torch.random.fork_rng(devices=[]):  # building the net must not disturb the caller's RNG
        net = ScoreTransformer(fields.mcfg)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{w_path}: weights do not match the model config: missing keys {missing[:8]}, "
            f"unexpected keys {unexpected[:8]}")
    bad = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
           for k, v in expected.items() if tuple(tensors[k].shape) != tuple(v.shape)]
    if bad:
        raise CheckpointError(f"{w_path}: shape mismatch with the model config: " + "; ".join(bad[:8]))
    free = fields.transform.mask(dtype=torch.float32)
    if "mask" in tensors and bool(((tensors["mask"].float() != 0) & (free == 0)).any()):
        raise CheckpointError(
            f"{cfg_path}: transform (kind {tr['kind']!r}, n {tr['n']}, m {tr['m']}) does not match the weights: "
            "the saved coordinate mask has free entries this transform fixes (wrong series length n?)")
    net.load_state_dict(tensors)
    return net


def load_checkpoint(directory: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a :class:`~pyfdc.core.model.DiffusionModel` saved by :func:`save_checkpoint`.

    Raises:
        CheckpointError: missing/corrupt/truncated files, unsupported format version, weights
            not matching the config (hash, missing or unexpected keys, shapes).
    """
    from pyfdc.core.model import DiffusionModel

    folder = Path(directory)
    config = read_config(folder)
    cfg_path = folder / CONFIG_FILE
    tensors, w_path = _read_weights(folder, config)
    try:
        dev = check_device(map_location)
    except ValueError as exc:
        raise CheckpointError(f"load_checkpoint(map_location=...): {exc}") from None
    fields = _model_fields(config, cfg_path)
    net = _load_net(fields, tensors, config["transform"], cfg_path, w_path)
    net.to(dev).eval()
    meta = dict(config.get("meta") or {})
    meta.setdefault("dataset", config.get("dataset"))
    meta["checkpoint"] = str(folder)
    meta["extra"] = config.get("extra", {})
    try:
        return DiffusionModel(net, fields.transform, fields.sde, fields.standardizer, meta=meta,
                              token_scaler=fields.token_scaler, pins=fields.pins, bounds=fields.bounds,
                              token_moments=fields.token_moments, exact=fields.exact)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path}: inconsistent model fields ({exc})") from exc

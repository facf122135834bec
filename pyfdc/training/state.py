"""Training state on disk: the output folder's checks, the atomic resume state, the resume guard and
the wall-clock schedule fit (used by :mod:`pyfdc.training.trainer`)."""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import torch

from pyfdc._io import atomic_path
from pyfdc.training.config import TrainConfig

STATE_FILE = "train_state.pt"
HISTORY_FILE = "history.json"
_STATE_FORMAT = 1
_LEGACY_DEFAULTS = {"small_t_fraction": 0.0}  # fields added after the state format was fixed


# calibrations/: E2-CRF calibrations kept beside the weights they were made for (pyfdc.e2crf.calibrate);
# a retrained model ignores and replaces them (each records its weights' fingerprint)
TRAIN_OUTPUTS = ("config.json", "model-????????????????.safetensors", STATE_FILE, HISTORY_FILE, "calibrations")


def _drop_leftovers(out: Path) -> None:
    """Temp files of a killed write (:func:`pyfdc.outdir.is_debris`) and weight files no committed config
    names: debris of an interrupted run, never another tool's files."""
    import json

    from pyfdc.core.checkpoint import WEIGHTS_NAME
    from pyfdc.outdir import is_debris

    if not out.is_dir():
        return
    for p in out.iterdir():
        ours = ("config.json", STATE_FILE, HISTORY_FILE, "model-")
        if is_debris(p.name) and any(p.name.startswith(f".{n}") for n in ours):
            p.unlink(missing_ok=True)
    try:
        named = json.loads((out / "config.json").read_text()).get("weights_file")
    except (OSError, ValueError, AttributeError):
        return  # no readable commit: nothing says which weight file is current, so none is removed
    for p in out.iterdir():
        if WEIGHTS_NAME.fullmatch(p.name) and p.name != named:
            p.unlink(missing_ok=True)


def _prepare_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Check ``out`` for a new / resumed run and make it (rank 0 only in a distributed run)."""
    state = out / STATE_FILE
    if resume:
        if not state.is_file():
            raise FileNotFoundError(f"resume=True but {state} does not exist: nothing to resume")
        _drop_leftovers(out)
        return
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output path {out} exists and is not a folder")
    _drop_leftovers(out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output folder {out} is not empty; pass overwrite=True (CLI: --overwrite) to replace "
            "its checkpoint, or resume=True (CLI: --resume) to continue training")
    if overwrite and out.is_dir():
        from pyfdc.outdir import check_foreign

        check_foreign(out, TRAIN_OUTPUTS, overwrite, "training")
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        # The old checkpoint (config + weights) stays loadable until the new run commits its first
        # one (save_checkpoint replaces it atomically); only the old run's resume state goes now.
        for name in (STATE_FILE, HISTORY_FILE):
            (out / name).unlink(missing_ok=True)


def _save_state(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _load_state(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # no arbitrary pickles
    except Exception as exc:  # truncated / corrupt pickle, or one a safe load refuses
        if "weights only load failed" in str(exc).lower():
            # torch's own message advises weights_only=False: unsafe for a file from elsewhere, so not repeated
            raise ValueError(f"{path}: holds Python objects that a safe load refuses (pyfdc never writes them); "
                             "it is not a pyfdc training state, and loading it unsafely could run code") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"{path}: cannot read training state ({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
        raise ValueError(f"{path}: not a pyfdc training state (format {_STATE_FORMAT} expected)")
    return state


PACE_WINDOW = 10  # epochs the pace is measured over: recent enough to follow a run that speeds up as saves thin out


def _fit_schedule_to_budget(run: dict[str, Any], cfg: TrainConfig, budget_s: float,
                            marks: list[float], t_start: float) -> None:
    """Set the cosine horizon (and scaled warmup) to the epochs expected to fit ``budget_s``.

    Called after every epoch of a budgeted run, with the end times of this session's epochs. The first
    epoch carries one-off start-up costs, so the pace is timed from the end of epoch 1 on, over the last
    :data:`PACE_WINDOW` epochs: early epochs save a checkpoint nearly every time (the validation loss
    improves at each), later ones seldom, so a pace fixed after three epochs left a third of a small
    dataset's budget unused. Never beyond ``cfg.epochs``, never below the epochs already run.
    """
    now = marks[-1]
    window = marks[-(PACE_WINDOW + 1):]
    per_epoch = (now - window[0]) / (len(window) - 1) if len(window) > 1 else now - t_start
    fit = run["epoch"] + int(max(0.0, budget_s - (now - t_start)) // max(per_epoch, 1e-9))
    planned = max(run["epoch"], min(cfg.epochs, fit), 1)
    run["planned_epochs"] = planned
    run["warmup_epochs"] = min(planned, round(cfg.warmup_epochs * planned / cfg.epochs))


def _cfg_dict(mcfg: Any) -> dict[str, Any]:
    if hasattr(mcfg, "to_dict"):
        return dict(mcfg.to_dict())
    return dataclasses.asdict(mcfg) if dataclasses.is_dataclass(mcfg) else dict(vars(mcfg))


def _check_resume(state: dict[str, Any], cfg: TrainConfig, meta: dict[str, Any], mcfg: Any,
                  world_size: int = 1) -> None:
    """Refuse to resume onto different data, model or optimisation settings, or another process count."""
    problems = []
    if state.get("world_size", 1) != world_size:  # the shards and per-rank noise streams depend on it
        problems.append(f"processes: checkpoint {state.get('world_size', 1)} vs now {world_size} "
                        "(resume with the same torchrun --nproc_per_node x --nnodes)")
    old = state["config"]
    for key, value in cfg.to_dict().items():
        # free to change: the length, the budget, the device, and which epoch's weights the run ends with
        if key not in ("epochs", "max_minutes", "device", "keep") and old.get(key, _LEGACY_DEFAULTS.get(key)) != value:
            problems.append(f"{key}: checkpoint {old.get(key)!r} vs now {value!r}")
    legacy = {"scaling": "channel", "pinning": "off", "pinned": 0}  # runs saved before these options
    for key in ("train_fingerprint", "transform_kind", "scaling", "pinning", "pinned", "n_fit", "n_val"):
        if state["meta"].get(key, legacy.get(key)) != meta[key]:
            problems.append(f"{key}: checkpoint {state['meta'].get(key)!r} vs now {meta[key]!r}")
    if state["model_config"] != _cfg_dict(mcfg):
        problems.append(f"model config: checkpoint {state['model_config']} vs now {_cfg_dict(mcfg)}")
    if problems:
        raise ValueError("cannot resume: the run differs from the saved one: " + "; ".join(problems))

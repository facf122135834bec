"""Training configuration: optimisation hyper-parameters, the run summary, model-config resolution,
the learning-rate schedule and the seeded fit/validation split (used by :mod:`pyfdc.training.trainer`)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TrainConfig", "TrainResult", "resolve_model_config", "lr_factor", "split_indices",
           "high_frequency_fraction", "recipe_time_head", "KEEP_CHOICES"]

KEEP_CHOICES: tuple[str, ...] = ("best", "last")


RECIPE_MINUTES = 15.0   # the suite's full profile: 15 minutes per model
RECIPE_EPOCH_CAP = 3000  # the budget ends a recipe run on every suite dataset but BasicMotions (36 fit series)
RECIPE_EMA = 0.999
# Series per optimiser step. On a CPU a small model's step costs about the same at 16 series as at 64 (per-op
# overhead dominates), so a budget buys 2-3.4x the steps; on the suite's validation splits that gave closer
# samples on five of eight datasets (benchmarks/RESULTS.md, "The recipe's batch"). The paper trains with 64.
RECIPE_BATCH = 16
# the frequency model's time-domain head (pyfdc.core.time_head): the data's sharp changes in the samples
RECIPE_TIME_HEAD = 32
# ... on data whose energy sits in the lower half of the spectrum. The suite's validation splits: the head
# helped or was neutral on six datasets with 0.0002-0.08 of their energy in the upper half, and smoothed
# away real high-frequency content on ACSF1 (0.68) and BasicMotions (0.19); the cut sits in that gap.
RECIPE_HEAD_MAX_HF = 0.125
# The weights a run ends with: the last epoch's (EMA). On the suite's validation splits (8-minute runs) the last
# epoch was also the best on 4 datasets, and where it was not its samples were as close or closer
# (ItalyPower, GunPoint, JapaneseVowels, BasicMotions, whose 4 validation series picked epoch 763 of 3,000),
# with no sign of copied training series (benchmarks/RESULTS.md, "Which weights a run keeps").
RECIPE_KEEP = "last"


@dataclass
class TrainConfig:
    """Optimisation hyper-parameters (paper defaults: 200 epochs, batch 64, lr 1e-3, 20 warmup).

    ``max_minutes`` is a wall-clock budget for this call: after every epoch of a fresh run the cosine
    horizon is set to the number of epochs expected to fit at the recent pace (at most ``epochs``;
    warmup scaled alike), so the learning rate anneals as time runs out, and training stops early
    if an epoch would overrun. Such runs depend on timing, so they are not bit-reproducible.
    ``val_repeats`` draws of (t, noise) per validation series reduce the variance of the
    validation loss; they use a fixed generator, so epochs are compared on identical draws.
    ``keep``: the weights the checkpoint holds when the run ends — ``"best"`` (the epoch of lowest
    validation loss) or ``"last"`` (the final epoch's, at the end of the cosine schedule); both mean the
    EMA weights when EMA is on. Until the run ends the checkpoint is the best epoch so far either way.
    """

    epochs: int = 200
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_epochs: int = 20
    ema_decay: float | None = None
    val_fraction: float = 0.1
    seed: int = 0
    grad_clip: float | None = 1.0
    max_minutes: float | None = None
    val_repeats: int = 4
    device: str = "cpu"
    small_t_fraction: float = 0.0
    keep: str = "best"

    @classmethod
    def recipe(cls, max_minutes: float | None = RECIPE_MINUTES, **overrides: Any) -> "TrainConfig":
        """The recipe the development suite trains with, and ``pyfdc train``'s default: an EMA of the weights
        (0.999), a wall-clock budget (``max_minutes``, default 15) that the cosine schedule is fitted to
        (at most 3,000 epochs, so the epoch count follows the data size and the machine), warmup 10% of the
        fitted epochs, batches of :data:`RECIPE_BATCH` series, the last epoch's weights kept
        (:data:`RECIPE_KEEP`). ``overrides`` set any other field."""
        fields = {"epochs": RECIPE_EPOCH_CAP, "warmup_epochs": RECIPE_EPOCH_CAP // 10, "ema_decay": RECIPE_EMA,
                  "batch_size": RECIPE_BATCH, "keep": RECIPE_KEEP,
                  "max_minutes": max_minutes, **overrides}
        return cls(**fields)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"TrainConfig.{name} {why}, got {getattr(self, name)!r}")

        for name in ("epochs", "batch_size", "val_repeats"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, "must be an integer >= 1")
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, int) \
                or not 0 <= self.warmup_epochs <= self.epochs:
            raise bad("warmup_epochs", f"must be an integer in [0, epochs={self.epochs}]")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise bad("seed", "must be a non-negative integer")
        if not _finite(self.lr) or self.lr <= 0:
            raise bad("lr", "must be a finite number > 0")
        if not _finite(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "must be a finite number >= 0")
        if not _finite(self.val_fraction) or not 0 <= self.val_fraction < 1:
            raise bad("val_fraction", "must be in [0, 1)")
        if self.ema_decay is not None and (not _finite(self.ema_decay) or not 0 < self.ema_decay < 1):
            raise bad("ema_decay", "must be None or in (0, 1)")
        if self.grad_clip is not None and (not _finite(self.grad_clip) or self.grad_clip <= 0):
            raise bad("grad_clip", "must be None or a finite number > 0")
        if self.max_minutes is not None and (not _finite(self.max_minutes) or self.max_minutes <= 0):
            raise bad("max_minutes", "must be None or a finite number > 0")
        if not _finite(self.small_t_fraction) or not 0 <= self.small_t_fraction <= 1:
            raise bad("small_t_fraction", "must be in [0, 1]")
        if self.keep not in KEEP_CHOICES:
            raise bad("keep", f"must be one of {KEEP_CHOICES}")
        if not isinstance(self.device, str):
            raise bad("device", "must be a device string such as 'cpu'")
        from pyfdc._device import check_device

        try:
            check_device(self.device)
        except ValueError as exc:
            raise ValueError(f"TrainConfig.device: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class TrainResult:
    """What :func:`train` returns: the model the checkpoint keeps (``TrainConfig.keep``; epoch ``kept_epoch``)
    and a summary of the run."""

    model: Any  # pyfdc.core.model.DiffusionModel
    out_dir: Path
    epochs_run: int
    planned_epochs: int
    best_epoch: int
    best_val_loss: float | None
    stopped_by_budget: bool
    wall_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    kept_epoch: int = 0

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary (stored in the checkpoint's config.json)."""
        return {
            "epochs_run": self.epochs_run,
            "planned_epochs": self.planned_epochs,
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "kept_epoch": self.kept_epoch,
            "final_train_loss": self.history[-1]["train_loss"] if self.history else None,
            "stopped_by_budget": self.stopped_by_budget,
            "wall_seconds": round(self.wall_seconds, 3),
        }


def resolve_model_config(model_config: Any, num_tokens: int, token_dim: int, channels: int = 0) -> Any:
    """``None``/``"small"``/``"paper"``/``ModelConfig``/dict -> ModelConfig for these tokens.

    A dict holds ModelConfig fields, optionally over a ``"preset"`` (``"small"`` or ``"paper"``):
    ``{"preset": "small", "time_head": 32}``; a time head gets ``series_channels = channels`` (the data's M)
    unless the dict sets it.
    """
    from pyfdc.core.score_net import ModelConfig

    presets = {"small": ModelConfig.small, "paper": ModelConfig.paper}
    if model_config is None:
        model_config = "small"
    if isinstance(model_config, str):
        if model_config not in presets:
            raise ValueError(f"model_config must be one of {sorted(presets)}, a dict or a ModelConfig, "
                             f"got {model_config!r}")
        return presets[model_config](num_tokens=num_tokens, token_dim=token_dim)
    if isinstance(model_config, dict):
        fields = dict(model_config)
        preset = fields.pop("preset", None)
        if preset is not None and preset not in presets:
            raise ValueError(f"model_config preset must be one of {sorted(presets)}, got {preset!r}")
        base = (presets[preset](num_tokens=num_tokens, token_dim=token_dim).to_dict() if preset
                else {"num_tokens": num_tokens, "token_dim": token_dim})
        if fields.get("time_head") and not fields.get("series_channels"):
            fields["series_channels"] = channels
        model_config = ModelConfig(**{**base, **fields})
    if not isinstance(model_config, ModelConfig):
        raise TypeError(
            "model_config must be None, 'small', 'paper', a dict or a ModelConfig, "
            f"got {model_config!r}")
    if (model_config.num_tokens, model_config.token_dim) != (num_tokens, token_dim):
        raise ValueError(
            f"model_config is for {model_config.num_tokens} tokens of width {model_config.token_dim}, "
            f"but the data gives {num_tokens} tokens of width {token_dim}")
    return model_config


def high_frequency_fraction(series: Any) -> float:
    """Share of the series' energy in the upper half of their spectrum: ``series (S, N, M)`` (or ``(S, N)``),
    standardised per channel, each series' mean removed, energy summed over series and channels. White
    noise reads ~0.5, a smooth signal ~0."""
    x = np.asarray(series, dtype=np.float64)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[1] < 2:
        raise ValueError(f"high_frequency_fraction needs series (S, N, M) with N >= 2, got shape {x.shape}")
    std = x.std(axis=(0, 1))
    x = (x - x.mean(axis=(0, 1))) / np.where(std > 0, std, 1.0)
    power = np.abs(np.fft.rfft(x - x.mean(axis=1, keepdims=True), axis=1)) ** 2   # (S, N//2+1, M)
    total = float(power.sum())
    return float(power[:, power.shape[1] // 2:].sum()) / total if total > 0 else 0.0


def recipe_time_head(series: Any, domain: str) -> tuple[int, str]:
    """The recipe's time-head width for training ``series (S, N, M)`` in ``domain``, and why in a few words:
    :data:`RECIPE_TIME_HEAD` for frequency models of data with at most :data:`RECIPE_HEAD_MAX_HF` of its
    energy in the upper half of the spectrum (:func:`high_frequency_fraction`), else 0 (no head)."""
    if domain != "freq":
        return 0, f"no time head ({domain}-domain tokens)"
    hf = high_frequency_fraction(series)
    if hf <= RECIPE_HEAD_MAX_HF:
        return RECIPE_TIME_HEAD, (f"time head {RECIPE_TIME_HEAD} (the data's upper-half spectral energy "
                                  f"{hf:.1%} <= {RECIPE_HEAD_MAX_HF:.1%})")
    return 0, (f"no time head (the data's upper-half spectral energy {hf:.1%} > {RECIPE_HEAD_MAX_HF:.1%}: "
               "the head would smooth it away)")


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warmup from ~0 to 1 over ``warmup_steps``, then cosine to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (fit, val) index split of ``n`` training series; val non-empty when fraction > 0."""
    if val_fraction == 0:
        return np.arange(n), np.arange(0)
    n_val = max(1, int(round(n * val_fraction)))
    if n_val >= n:
        raise ValueError(f"val_fraction={val_fraction} leaves no training series out of {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])

"""Calibration: pick an E2-CRF configuration for one model and step count from shadow samples.

``calibrate(model, steps)`` draws a few *shadow* series twice from the same noise — uncached, and with
each candidate configuration in order of cost (cheapest first: each budget with the time head's correction
reused between runs every 4 steps, then with the head on every step; :data:`DEFAULT_CANDIDATES`) — and keeps
the first candidate whose cache error stays within the targets:

- ``max_shift`` (the gate by default, 0.15): the largest standardised paired shift of a per-series
  statistic — log power per frequency band and channel, log curvature energy per channel, and every
  statistic the C2ST's tree classifier reads (:func:`pyfdc.series_summary.summary_features`: moments,
  quantiles, mean |Δx| and |Δ²x|, edge levels, band powers, cross-channel correlations) —
  ``|mean_i(Lc_i − Lu_i)| / sd_i(Lu_i)`` (:func:`pyfdc.e2crf.shadow.statistic_shift`): how far the cache moves
  it, in units of its spread across series. A shift of ``g`` sd in one statistic lets a classifier reach
  about ``Φ(g/2)``: 0.15 is ~0.53, within the floor's interval of EM-1000;
- ``min_speedup`` (1.1): the cached run must also be faster than the uncached one by this factor
  (measured on the shadow batch), else caching is not worth it;
- ``max_deviation`` and ``max_band_error`` (off by default, ``None``): the median paired relative RMS
  deviation (:func:`pyfdc.e2crf.shadow.paired_deviation`) and the worst relative band power error
  (:func:`pyfdc.e2crf.shadow.band_spectral_error`) — both recorded for every candidate, gates only on request.

Why this gate: on the development suite (``benchmarks/RESULTS.md``, every candidate put on the front at
1,000 steps) the former gates (deviation ≤ 0.02, band error ≤ 5%, tuned on the ECG model) rejected
budgets that kept EM-1000's distribution on ACSF1 and BasicMotions (relative errors of bands with little
power) and passed every budget on Sines although each changed it (C2ST 0.85–0.95 at deviation ≤ 0.004),
while the statistic shift separated the candidates that kept the distribution from those that did not.
The classifier's own statistics joined the gate when band powers and curvature alone passed a budget on
the shipped ECG model (f 0.35 at 1,000 steps, largest of them 0.12) that 256 series told from EM-1000 at
0.58–0.62: it moved mean |Δ²x| — jitter on the flat stretches, which the squared curvature hides under
the QRS peak — by 0.42 sd. A kept calibration names the statistics it read (``statistics``); one made with
others is made again.

If no candidate passes, the result says so (``fallback=True``) and its config is ``None`` (sample
uncached), so a budget that cannot keep quality falls back instead of diverging. The targets
are a proxy for the C2ST, not a replacement: check a calibrated configuration on the front.

Only the model is used: no training, validation or held-out data. The shadow noise ids
come from their own seed (``CALIBRATION_SEED``), so calibration never replays a user's samples.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pyfdc.e2crf.config import E2CRFConfig, has_time_head

CALIBRATION_SEED = 0x5EED_CA11
DEFAULT_TAIL = 0.05   # every token recomputed on the last 5% of steps (E2CRFConfig.tail)
DEFAULT_HEAD_EVERY = 4   # the time head on every 4th cached step (E2CRFConfig.head_every), tried first
# per budget, cheapest first: the time head's correction reused between its runs, then the head on every step
DEFAULT_CANDIDATES: tuple[dict[str, Any], ...] = tuple({"budget": b, "tail": DEFAULT_TAIL, "head_every": h}
                                                       for b in (0.2, 0.35, 0.5, 0.7) for h in (DEFAULT_HEAD_EVERY, 1))
# which candidate list a calibration tried; a kept calibration made from an older one is made again
CANDIDATE_SET = "budgets+head-reuse"
DEFAULT_TARGETS: dict[str, float | None] = {"max_shift": 0.15, "max_deviation": None, "max_band_error": None,
                                            "min_speedup": 1.1}
FORMAT = "pyfdc-e2crf-calibration"
# which statistics the shift gate reads; a kept calibration made with others is made again
SHADOW_STATISTICS = "bands+curvature+c2st-summaries"


@dataclass
class Calibration:
    """What :func:`calibrate` found: the chosen ``config`` and every candidate's measurements."""

    config: E2CRFConfig | None  # None: sample uncached
    fallback: bool
    steps: int
    solver: str
    targets: dict[str, float]
    rows: list[dict[str, Any]] = field(default_factory=list)
    num_shadow: int = 0
    seed: int = CALIBRATION_SEED
    model_id: str | None = None  # pyfdc.core.model.sampling_fingerprint of the model it was made for
    statistics: str | None = SHADOW_STATISTICS  # the shift gate's statistics (None: before they were named)
    # pyfdc.core.model.clip_tag of the model it was made for ("" clip on, "-noclip"); None: an older pyfdc,
    # which kept a --clip off calibration under the clip-on name
    clip_tag: str | None = None
    # the candidate list it tried (CANDIDATE_SET for the defaults, "custom"; None: before it was recorded)
    candidate_set: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "config": None if self.config is None else self.config.to_dict(),
                "fallback": self.fallback,
                "steps": self.steps, "solver": self.solver, "targets": dict(self.targets),
                "rows": list(self.rows), "num_shadow": self.num_shadow, "seed": self.seed,
                "model_id": self.model_id, "statistics": self.statistics, "clip_tag": self.clip_tag,
                "candidate_set": self.candidate_set}

    def check_model(self, model: Any, source: str = "calibration") -> None:
        """A one-line ValueError unless this calibration was made for ``model`` (same weights, same clip)."""
        from pyfdc.core.model import sampling_fingerprint

        if self.model_id is None:
            raise ValueError(f"{source} records no model (written by an older pyfdc): calibrate this model again")
        mid = sampling_fingerprint(model)  # one pass over the weights
        if self.model_id != mid:
            how = "pyfdc calibrate --checkpoint ... --clip off" if mid.endswith("-noclip") else \
                "pyfdc calibrate --checkpoint ..."
            raise ValueError(f"{source} was calibrated for another model or clip setting ({self.model_id}, this "
                             f"one is {mid}; -noclip: support clip off); calibrate this model: {how}")

    @classmethod
    def from_dict(cls, d: Any, source: str = "calibration") -> "Calibration":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{source}: not a pyfdc E2-CRF calibration (format {FORMAT!r} expected)")
        try:
            steps = d["steps"]
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                raise ValueError(f"steps must be an int >= 1, got {steps!r}")
            config = None if d["config"] is None else E2CRFConfig.from_dict(d["config"])
            return cls(config=config, fallback=bool(d["fallback"]), steps=steps,
                       solver=str(d["solver"]), targets=dict(d["targets"]), rows=list(d.get("rows", [])),
                       num_shadow=int(d.get("num_shadow", 0)), seed=int(d.get("seed", CALIBRATION_SEED)),
                       model_id=None if d.get("model_id") is None else str(d["model_id"]),
                       statistics=None if d.get("statistics") is None else str(d["statistics"]),
                       clip_tag=None if d.get("clip_tag") is None else str(d["clip_tag"]),
                       candidate_set=None if d.get("candidate_set") is None else str(d["candidate_set"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: corrupt calibration ({type(exc).__name__}: {exc})") from None

    def save(self, path: str | Path) -> None:
        """Write as JSON, atomically (an existing file stays intact until the new one is complete)."""
        from pyfdc._io import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such calibration file (write one with 'pyfdc calibrate')") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(d, str(path))


def _check_target(name: str, v: Any, low: float) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < low:
        raise ValueError(f"calibrate: {name} must be None or a finite number >= {low}, got {v!r}")
    return float(v)


def _within(value: float, limit: float | None) -> bool:
    return limit is None or value <= limit


def candidate_configs(model: Any, candidates: Sequence[dict[str, Any]] = DEFAULT_CANDIDATES,
                      base: E2CRFConfig | None = None) -> tuple[E2CRFConfig, list[E2CRFConfig]]:
    """``(base, [base with each candidate's fields])`` — what :func:`calibrate` tries, validated before any
    sampling. ``base`` defaults to ``E2CRFConfig()`` (plain-δ ranking, the ``gaussian`` cached output where
    :func:`~pyfdc.e2crf.config.uses_gaussian_output`, else ``features``); ``auto`` is resolved for the model."""
    if base is None:
        base = E2CRFConfig()
    if not isinstance(base, E2CRFConfig):
        raise TypeError(f"calibrate: base must be an E2CRFConfig, got {type(base).__name__}")
    base = base.for_model(model)
    if not candidates:
        raise ValueError("calibrate: candidates is empty")
    configs = []
    for c in candidates:
        # a set tail or head period stays
        c = {k: v for k, v in dict(c).items() if not (k in ("tail", "head_every") and getattr(base, k) is not None)}
        try:
            configs.append(dataclasses.replace(base, **c).for_model(model))   # no head: head_every dropped
        except (TypeError, ValueError) as exc:
            raise ValueError(f"calibrate: candidate {dict(c)!r}: {exc}") from None
    return base, configs


def calibrate(model: Any, steps: int, solver: str = "em", base: E2CRFConfig | None = None,
              candidates: Sequence[dict[str, Any]] = DEFAULT_CANDIDATES, max_shift: float | None = DEFAULT_TARGETS["max_shift"],
              max_deviation: float | None = DEFAULT_TARGETS["max_deviation"],
              max_band_error: float | None = DEFAULT_TARGETS["max_band_error"],
              min_speedup: float | None = DEFAULT_TARGETS["min_speedup"], num_shadow: int = 32,
              batch_size: int = 64, seed: int = CALIBRATION_SEED, progress: bool = True,
              all_candidates: bool = False) -> Calibration:
    """Choose the cheapest candidate configuration whose cache error is within the targets.

    Args:
        model: a :class:`~pyfdc.core.model.DiffusionModel`.
        steps: the sampler's step count (the config is for this count; few steps change more per step).
        solver: ``"em"``, ``"ddim"`` or ``"dpm2m"`` (the uncached reference uses the same solver).
        base: configuration the candidates override (default ``E2CRFConfig()``: plain-δ ranking, the
            ``gaussian`` cached output where the model has token moments and spectral tokens).
        candidates: dicts of ``E2CRFConfig`` fields, cheapest first (default: budgets 0.2, 0.35, 0.5, 0.7, each
            with the time head every 4 steps, then every step; a set ``base.tail`` or ``base.head_every`` stays).
        max_shift, max_deviation, max_band_error, min_speedup: the targets (module docstring; ``None``:
            not a gate).
        num_shadow: shadow series (more: a steadier decision, a longer calibration).
        all_candidates: measure every candidate (a table) instead of stopping at the first that passes.
    Returns:
        :class:`Calibration`; ``fallback=True`` (config ``None``: sample uncached) when no candidate passes.
    """
    import torch

    from pyfdc.sampling.sampler import Sampler

    for name, v in (("steps", steps), ("num_shadow", num_shadow), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"calibrate: {name} must be an int >= 1, got {v!r}")
    if num_shadow < 4:
        raise ValueError(f"calibrate: num_shadow must be >= 4 for a median and band powers, got {num_shadow}")
    targets = {"max_shift": _check_target("max_shift", max_shift, 0.0),
               "max_deviation": _check_target("max_deviation", max_deviation, 0.0),
               "max_band_error": _check_target("max_band_error", max_band_error, 0.0),
               "min_speedup": _check_target("min_speedup", min_speedup, 0.0)}
    base, configs = candidate_configs(model, candidates, base)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(configs) + 1, desc="calibrating E2-CRF", unit="run", dynamic_ncols=True)
    with torch.inference_mode():
        t0 = time.perf_counter()
        ref = Sampler(model, solver).sample(num_shadow, steps=steps, batch_size=batch_size, seed=seed,
                                            progress=False).numpy()
        t_ref = time.perf_counter() - t0
        if bar is not None:
            bar.update(1)
        rows: list[dict[str, Any]] = []
        chosen: E2CRFConfig | None = None
        tried: list[E2CRFConfig] = []
        for cand, cfg in zip(candidates, configs):
            if cfg in tried:   # the same config as an earlier candidate (head_every on a model without a head)
                if bar is not None:
                    bar.update(1)
                continue
            tried.append(cfg)
            row = _measure(model, cfg, solver, steps, num_shadow, batch_size, seed, ref, t_ref, targets)
            rows.append({"candidate": {k: getattr(cfg, k) for k in dict(cand)}, **row})   # the values run
            ok = row["passed"]
            if bar is not None:
                bar.update(1)
            if ok and chosen is None:
                chosen = cfg
                if not all_candidates:
                    break
    if bar is not None:
        bar.close()
    fallback, config = chosen is None, chosen
    from pyfdc.core.model import clip_tag, sampling_fingerprint

    return Calibration(config=config, fallback=fallback, steps=steps, solver=solver, targets=targets,
                       rows=rows, num_shadow=num_shadow, seed=seed, model_id=sampling_fingerprint(model),
                       clip_tag=clip_tag(model),
                       candidate_set=CANDIDATE_SET if (tuple(map(dict, candidates)) == DEFAULT_CANDIDATES
                                                       and base.tail is None and base.head_every is None) else "custom")


def _measure(model: Any, cfg: E2CRFConfig, solver: str, steps: int, num_shadow: int, batch_size: int, seed: int,
             ref: Any, t_ref: float, targets: dict[str, float | None]) -> dict[str, Any]:
    """One candidate on the shadow batch: its statistics against the uncached ``ref`` and the verdict."""
    from pyfdc.e2crf.shadow import band_spectral_error, paired_deviation, statistic_shift
    from pyfdc.sampling.sampler import Sampler

    t0 = time.perf_counter()
    sampler = Sampler(model, solver, cache=cfg)
    x = sampler.sample(num_shadow, steps=steps, batch_size=batch_size, seed=seed, progress=False).numpy()
    seconds = time.perf_counter() - t0
    dev = paired_deviation(x, ref)
    bands = band_spectral_error(x, ref)
    worst = max(abs(v) for v in bands.values())
    speedup = t_ref / seconds
    shifts = statistic_shift(x, ref)
    shift = max(shifts.values())
    min_speedup = targets["min_speedup"]
    ok = (_within(shift, targets["max_shift"]) and _within(dev["median"], targets["max_deviation"])
          and _within(worst, targets["max_band_error"]) and (min_speedup is None or speedup >= min_speedup))
    assert sampler.stats is not None
    return {"deviation_median": dev["median"], "deviation_p95": dev["p95"], "band_deviation": dev["bands"],
            "band_power_error": bands, "worst_band_error": worst, "shift": shift, "shifts": shifts,
            "speedup": speedup, "seconds": seconds, "reference_seconds": t_ref,
            "recomputed_fraction": sampler.stats.mean_recomputed_fraction, "passed": ok}


# ----------------------------------------------------------------------------- the default, per model

CALIBRATIONS_DIR = "calibrations"


def calibration_file(checkpoint: str | Path, steps: int, solver: str = "em", tag: str = "") -> Path:
    """Where a checkpoint folder keeps its calibration for ``steps`` ``solver`` steps (``tag``:
    :func:`pyfdc.core.model.clip_tag`, so sampling with the clip off keeps its own)."""
    return Path(checkpoint) / CALIBRATIONS_DIR / f"{solver}-{steps}{tag}.json"


def model_calibration(model: Any, steps: int, solver: str = "em", progress: bool = True,
                      say: Any = None) -> Calibration:
    """The calibration that E2-CRF samples ``model`` with by default at ``steps`` ``solver`` steps.

    Looked up in the model's memory, then in its checkpoint folder (``calibrations/SOLVER-STEPS.json``),
    and only for these exact weights and clip setting (:func:`pyfdc.core.model.sampling_fingerprint`); on first
    use it is made
    here (:func:`calibrate`, default targets) and kept in both places — a checkpoint folder that cannot be
    written keeps it in memory only. ``say(line)`` reports what happened (default: nothing).
    """
    from pyfdc.core.model import clip_tag, sampling_fingerprint

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    say = say or (lambda line: None)
    mid, key = sampling_fingerprint(model), (solver, steps, clip_tag(model))
    cal = model.calibrations.get(key)
    if cal is not None and cal.model_id == mid:
        return cal
    cal = None  # none remembered, or made for weights this model no longer has
    folder = model.meta.get("checkpoint")
    path = None if folder is None else calibration_file(folder, steps, solver, clip_tag(model))
    def problem(c: Calibration) -> str | None:
        if c.clip_tag is None:
            return "made by an older pyfdc that did not record the clip setting"
        if c.model_id != mid or c.steps != steps or c.solver != solver:
            return "made for other weights (the checkpoint was retrained)"
        if c.statistics != SHADOW_STATISTICS:
            return "made with an older shadow test (its gate missed statistics a classifier sees)"
        if c.candidate_set != CANDIDATE_SET and has_time_head(model):
            return "made from an older candidate list (before the time head's correction could be reused)"
        return None if c.targets == DEFAULT_TARGETS else "made with other targets than today's defaults (an older pyfdc)"

    cal = load_kept(path, Calibration.load, problem, say)
    if cal is None:
        say(f"calibrating E2-CRF for this model at {steps} {solver} steps (first use: shadow samples, no data)")
        t0 = time.perf_counter()
        cal = calibrate(model, steps, solver, progress=progress)
        note = f"{time.perf_counter() - t0:.0f} s" + keep_in_checkpoint(cal, path)
        say(f"calibrated in {note}: {describe(cal)}")
    model.calibrations[key] = cal
    return cal


def default_config(model: Any, steps: int, solver: str = "em", progress: bool = True) -> E2CRFConfig | None:
    """What ``E2CRFConfig()`` (and ``pyfdc sample --sampler e2crf`` without ``--e2crf-*`` options) runs on
    ``model`` at ``steps``: the model's own calibration (:func:`model_calibration`); ``None`` (uncached) where
    no budget passes. No constant preset: budgets measured on one model changed the distribution of others
    (``benchmarks/RESULTS.md``)."""
    return model_calibration(model, steps, solver, progress=progress).config


def calibration_for(model: Any, steps: int, solver: str = "em", base: E2CRFConfig | None = None,
                    progress: bool = False, say: Any = None) -> Calibration:
    """The calibration that resolves a config leaving its budget open (``budget=None``): the default config
    gets the model's kept calibration (:func:`model_calibration`); any other is calibrated with it as the
    base, remembered in the model's memory only. ``say(line)`` reports what happened (default: nothing)."""
    base = base or E2CRFConfig()
    if base == E2CRFConfig():
        return model_calibration(model, steps, solver, progress=progress, say=say)
    from pyfdc.core.model import sampling_fingerprint

    key = (solver, steps, tuple(sorted(base.to_dict().items())), sampling_fingerprint(model))
    if key not in model.calibrations:
        (say or (lambda line: None))(f"calibrating the budget of {base.describe()} at {steps} {solver} steps "
                                     "(kept in memory only)")
        model.calibrations[key] = calibrate(model, steps, solver, base=base, progress=progress)
    return model.calibrations[key]


def calibrated_config(model: Any, steps: int, solver: str = "em", base: E2CRFConfig | None = None,
                      progress: bool = False) -> E2CRFConfig | None:
    """:func:`calibration_for`'s config; ``None``: sample uncached."""
    return calibration_for(model, steps, solver, base, progress).config


def load_kept(path: Path | None, load: Any, problem: Any, say: Any) -> Any:
    """What a checkpoint folder keeps at ``path`` (``load(path)``), or ``None`` when there is none, it cannot be
    read, or ``problem(kept)`` names a reason not to use it (each said in one line)."""
    if path is None or not path.is_file():
        return None
    try:
        kept = load(path)
    except ValueError as exc:
        say(f"ignoring {path}: {exc}")
        return None
    why = problem(kept)
    if why:
        say(f"ignoring {path}: {why}")
        return None
    return kept


def keep_in_checkpoint(result: Any, path: Path | None) -> str:
    """Save ``result`` (anything with ``.save(path)``) to ``path`` in a checkpoint folder, unless there is none or
    it is a shipped checkpoint; returns what happened, as ``", kept in PATH"`` and the like."""
    if path is None:
        return ""
    if _shipped(path.parent.parent):
        return ", kept in memory only (a shipped checkpoint: the installation is not written to)"
    try:
        path.parent.mkdir(exist_ok=True)
        result.save(path)
    except OSError as exc:
        return f", not kept ({path.parent} is not writable: {exc.strerror})"
    return f", kept in {path}"


def _shipped(folder: Path) -> bool:
    from pyfdc.pretrained import PRETRAINED

    return any(folder.resolve() == p.resolve() for p in PRETRAINED.values())


def describe(cal: Calibration) -> str:
    """One line: what the calibration chose."""
    if cal.fallback:
        return f"no budget keeps this model's distribution at {cal.steps} {cal.solver} steps: sampling uncached"
    return cal.config.describe()

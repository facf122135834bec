"""``--sampler auto``: the cheapest sampler that keeps this model's EM-1000 distribution, chosen by a C2ST.

A user asks for a quality, not a step count. :func:`choose_sampler` draws a shadow reference set of uncached
EM-1000 (``num_shadow`` series, the model only: no data), then tries the candidates cheapest first — uncached
DPM-Solver++(2M) and EM at a few step counts, E2-CRF at 100, 250, 500 and 1,000 steps with the model's own
calibration — and keeps the first whose samples a classifier cannot tell from the reference **twice**: a first draw
must pass the gate and a second, fresh draw must pass it again. Taking the fastest candidate past one noisy
gate selects lucky draws (on the development suite a single 128-series gate chose EM-250 on BasicMotions,
whose fresh draw read 0.621 against a floor of 0.539: ``benchmarks/RESULTS.md``); the confirmation draw costs
no more than the first. Where nothing passes, the choice is EM-1000 itself.

The gate is the C2ST's own null on this model at this size (:func:`permutation_gate`): the headline C2ST of
:data:`NULL_PERMUTATIONS` random relabellings of the shadow set pooled with the first candidate's draw,
mean + 1.645 sd — what a sampler exchangeable with EM-1000 reads at most about 95% of the time (0.535–0.562
at 256 series on the development suite's models). The binomial bound ``0.5 + 1.96·sqrt(0.25 / (2 n))``
(:func:`c2st_gate`, the gate before stop 34) is for one classifier on independent test points, while the
headline is the larger of two cross-validated accuracies; the relabelled null measures that instead of
assuming it.

The default shadow set is :data:`AUTO_SHADOW` = 256 series: at 128 the shipped ECG model's choice,
DPM-Solver++(2M)-10, passed twice yet read 0.598 against EM-1000 on 256 fresh series, where a second EM-1000
seed reads 0.492.

Cost: the reference (``num_shadow`` EM-1000 series: 26% of a 1,000-series EM-1000 run at the default 256)
plus one or two draws of each candidate tried, all cheaper than the reference, :data:`NULL_PERMUTATIONS` C2STs
for the gate — and E2-CRF calibrations where its candidates are reached. The choice is kept like a calibration
(``calibrations/auto-N.json`` in the checkpoint folder, for these exact weights), so it is paid once per model.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from pyfdc.evaluation.front import SamplerSpec, parse_spec, run_sampler

__all__ = ["AutoChoice", "AUTO_CANDIDATES", "choose_sampler", "model_auto_choice", "c2st_gate", "permutation_gate"]

FORMAT = "pyfdc-auto-sampler"
REFERENCE = "em:1000"
AUTO_CANDIDATES: tuple[str, ...] = ("dpm2m:10", "dpm2m:25", "dpm2m:50", "e2crf:100", "em:100", "dpm2m:100",
                                    "e2crf:250", "em:250", "e2crf:500", "em:500", "e2crf:1000")
# the shadow sets' noise: their own seeds, so a choice never replays a user's samples
REFERENCE_SEED, FIRST_SEED, CONFIRM_SEED = 0xA070_0001, 0xA070_0002, 0xA070_0003
_E2CRF_OVERHEAD = 0.15   # a cached step's cost beyond its recomputed fraction, in full steps (ordering only)


AUTO_SHADOW = 256   # the default shadow set (see the module's docstring)
# what a kept choice was made under: its E2-CRF candidates resolve through the calibration (its gate's statistics,
# its candidates' tail), so a choice made under other rules is made again
AUTO_RULES = ("e2crf-calibration:bands+curvature+c2st-summaries,tail-0.05;candidates:e2crf-100,e2crf-500;"
              "gate:permutation-null")
NULL_PERMUTATIONS = 19   # the gate's null: relabellings of the pooled sets (one C2ST each)


def c2st_gate(n: int) -> float:
    """The largest accuracy of *one* classifier at ``n`` series per side that does not reject 0.5 at the 2.5% level
    (the binomial bound; :func:`permutation_gate` is the headline's own null)."""
    return 0.5 + 1.96 * math.sqrt(0.25 / (2 * n))


def permutation_gate(a: Any, b: Any, permutations: int | None = None, seed: int = 0,
                     c2st_report: Callable[..., dict[str, Any]] | None = None) -> tuple[float, list[float]]:
    """The headline C2ST's null at this size: ``a`` and ``b`` (``(S, N, M)`` each) pooled, relabelled at random
    ``permutations`` times (default :data:`NULL_PERMUTATIONS`; two halves of ``min(len(a), len(b))`` series each),
    one C2ST per relabelling.

    Returns ``(mean + 1.645 sd, headlines)``: a sampler with the reference's distribution reads below the gate
    about 95% of the time. The labels are shuffled, so the gate does not depend on how different ``a`` and
    ``b`` are, only on the classifiers, the features and ``n``."""
    import numpy as np

    if c2st_report is None:
        from pyfdc.evaluation.quality import c2st_report
    permutations = NULL_PERMUTATIONS if permutations is None else permutations
    if permutations < 2:
        raise ValueError(f"permutation_gate needs at least 2 relabellings, got {permutations}")
    n = min(len(a), len(b))
    pooled = np.concatenate([np.asarray(a)[:n], np.asarray(b)[:n]])
    rng = np.random.default_rng(seed)
    heads = []
    for p in range(permutations):
        order = rng.permutation(2 * n)
        heads.append(float(c2st_report(pooled[np.sort(order[:n])], pooled[np.sort(order[n:])], seed=p)["headline"]))
    h = np.asarray(heads)
    return float(h.mean() + 1.645 * h.std(ddof=1)), heads


@dataclass
class AutoChoice:
    """The chosen sampler ``spec`` (a front spec, e.g. ``"dpm2m:50"``) and every trial that led to it."""

    spec: str
    model_id: str
    num_shadow: int
    reference: str
    gate: float
    reference_seconds: float
    seconds: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    rules: str | None = AUTO_RULES   # None: made before the rules were named
    gate_null: list[float] = field(default_factory=list)   # the permutation null's headlines behind ``gate``
    # pyfdc.core.model.clip_tag of the model it was made for; None: an older pyfdc (clip setting unrecorded)
    clip_tag: str | None = None
    # the shadow reference set (S, N, M) of the run that made the choice; not saved
    shadow: Any = field(default=None, repr=False, compare=False)

    @property
    def sampler_spec(self) -> SamplerSpec:
        return parse_spec(self.spec)

    @property
    def steps(self) -> int:
        return self.sampler_spec.steps

    def sampler(self, model: Any) -> Any:
        """The chosen :class:`~pyfdc.sampling.sampler.Sampler` for ``model`` (sample with ``steps=self.steps``)."""
        from pyfdc.sampling.sampler import Sampler

        spec = self.sampler_spec
        return Sampler(model, spec.method, **spec.sampler_options())

    def describe(self) -> str:
        """One line: what was chosen, and how it passed."""
        t = next((t for t in self.trials if t["spec"] == self.spec and t["verdict"] == "chosen"), None)
        if t is None:
            return f"{self.spec} (no cheaper sampler kept its distribution at {self.num_shadow} series)"
        return (f"{self.spec}: C2ST vs {self.reference} {t['c2st']:.3f} then {t['c2st_confirm']:.3f} (gate "
                f"{self.gate:.3f}, {self.num_shadow} series), {self.reference_seconds / t['seconds']:.1f}x faster "
                f"than {self.reference}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                                     if f.name != "shadow"}}

    @classmethod
    def from_dict(cls, d: Any, source: str = "auto choice") -> "AutoChoice":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{source}: not a pyfdc auto-sampler choice (format != {FORMAT!r})")
        try:
            optional = ("shadow", "rules", "gate_null", "clip_tag")
            choice = cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name not in optional},
                         rules=d.get("rules"), gate_null=list(d.get("gate_null", [])), clip_tag=d.get("clip_tag"))
            parse_spec(choice.spec)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: invalid auto choice ({type(exc).__name__}: {exc})") from exc
        return choice

    def save(self, path: str | Path) -> None:
        from pyfdc._io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "AutoChoice":
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read an auto choice ({exc})") from exc
        return cls.from_dict(d, str(path))


def _nominal_cost(model: Any, spec: SamplerSpec, calibrated: dict[str, Any]) -> float:
    """Network evaluations in full-step units: steps, times the budget (+ overhead) for E2-CRF once calibrated."""
    if spec.kind != "e2crf":
        return float(spec.steps)
    cfg = calibrated.get(spec.name, "unknown")
    if cfg is None:          # calibrated to uncached: the same as the uncached sampler at these steps
        return float(spec.steps)
    budget = 0.5 if cfg == "unknown" else float(cfg.budget)
    tail = 0 if cfg == "unknown" else cfg.tail_steps(spec.steps)   # steps that recompute every token
    return (spec.steps - tail) * min(1.0, budget + _E2CRF_OVERHEAD) + tail


def _resolve(model: Any, spec: SamplerSpec, calibrated: dict[str, Any], say: Callable[[str], None]) -> SamplerSpec | None:
    """An ``e2crf`` spec with an open budget -> the model's calibrated one; ``None`` where it samples uncached."""
    if spec.kind != "e2crf" or spec.e2crf_config().budget is not None:
        return spec
    if spec.name not in calibrated:
        from pyfdc.e2crf.calibrate import calibration_for

        cal = calibration_for(model, spec.steps, spec.method, base=spec.e2crf_config(), progress=False, say=say)
        calibrated[spec.name] = cal.config
    cfg = calibrated[spec.name]
    if cfg is None:
        return None
    from pyfdc.e2crf.calibrate import DEFAULT_CANDIDATES

    # every field the calibration's candidates set (budget, tail), so the trial samples the calibrated config
    chosen = {k: getattr(cfg, k) for k in DEFAULT_CANDIDATES[0] if getattr(cfg, k) is not None}
    return SamplerSpec("e2crf", spec.steps, tuple(sorted({**dict(spec.options), **chosen}.items())))


def choose_sampler(model: Any, num_shadow: int = AUTO_SHADOW, candidates: Sequence[str] = AUTO_CANDIDATES,
                   batch_size: int = 64, progress: bool = True, say: Callable[[str], None] | None = None,
                   reference: str = REFERENCE, gate: float | None = None) -> AutoChoice:
    """Choose the cheapest of ``candidates`` (front specs) that keeps the distribution of ``reference`` (uncached
    EM-1000) on ``model``: two C2STs within the gate against a shadow set of ``num_shadow`` reference series.
    ``gate`` None: :func:`permutation_gate` of the shadow set and the first draw tried. Candidates as dear as the
    reference are never tried; nothing passing chooses the reference. ``say(line)`` reports each trial."""
    from pyfdc.core.model import clip_tag, sampling_fingerprint
    from pyfdc.evaluation.quality import c2st_report

    if isinstance(num_shadow, bool) or not isinstance(num_shadow, int) or num_shadow < 16:
        raise ValueError(f"num_shadow must be an int >= 16 (a C2ST needs series to hold out), got {num_shadow!r}")
    specs = [parse_spec(c) for c in candidates]
    say = say or (lambda line: None)
    t_start = time.perf_counter()
    ref_spec = parse_spec(reference)
    if ref_spec.kind == "e2crf":
        raise ValueError(f"the reference must be an uncached sampler, got {reference!r}")
    limit = _nominal_cost(model, ref_spec, {})
    bar = _bar(progress, num_shadow * ref_spec.steps, f"auto: {reference} shadow set")
    ref = run_sampler(model, ref_spec, num_shadow, batch_size, REFERENCE_SEED, bar=bar)
    if bar is not None:
        bar.close()
    ref_s = sum(ref.batch_seconds) * num_shadow / (len(ref.batch_seconds) * ref.batch_size)
    trials: list[dict[str, Any]] = []
    gates = _Gate(ref.x, gate, c2st_report, say)
    calibrated: dict[str, Any] = {}
    chosen = reference
    pending = list(specs)
    while pending:
        pending.sort(key=lambda s: _nominal_cost(model, s, calibrated))
        spec = pending.pop(0)
        if _nominal_cost(model, spec, calibrated) >= limit:
            break
        open_budget = spec.kind == "e2crf" and spec.e2crf_config().budget is None
        if open_budget and spec.name not in calibrated:
            if _resolve(model, spec, calibrated, say) is not None:
                pending.append(spec)      # calibrated: back in the queue at its real cost
                continue
        resolved = _resolve(model, spec, calibrated, say)
        if resolved is None:
            trials.append({"spec": spec.name, "verdict": "skipped: its calibration samples uncached"})
            continue
        trial = _try(model, resolved, ref.x, num_shadow, batch_size, gates, c2st_report)
        trials.append(trial)
        say(f"{resolved.name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in trial.items() if k != "spec"))
        if trial["verdict"] == "chosen":
            chosen = resolved.name
            break
    if gates.value is None:   # nothing was tried, so no null was needed: the binomial bound is recorded
        gates.value = c2st_gate(num_shadow)
    return AutoChoice(chosen, sampling_fingerprint(model), num_shadow, reference, gates.value, ref_s,
                      time.perf_counter() - t_start, trials, gate_null=gates.null, clip_tag=clip_tag(model),
                      shadow=ref.x)


class _Gate:
    """The run's gate: given, or :func:`permutation_gate` of the shadow set and the first draw (made once)."""

    def __init__(self, ref: Any, value: float | None, c2st_report: Any, say: Callable[[str], None]) -> None:
        self.ref, self.value, self.c2st_report, self.say = ref, value, c2st_report, say
        self.null: list[float] = []

    def __call__(self, first_draw: Any) -> float:
        if self.value is None:
            t0 = time.perf_counter()
            self.value, self.null = permutation_gate(self.ref, first_draw, c2st_report=self.c2st_report)
            self.say(f"gate {self.value:.3f}: the C2ST's null at {len(self.ref)} series "
                     f"({len(self.null)} relabellings, {time.perf_counter() - t0:.0f} s)")
        return self.value


def _try(model: Any, spec: SamplerSpec, ref: Any, n: int, batch_size: int, gates: _Gate,
         c2st_report: Any) -> dict[str, Any]:
    """One candidate: a draw and its C2ST against the reference; a confirmation draw when it passes."""
    first = run_sampler(model, spec, n, batch_size, FIRST_SEED)
    gate = gates(first.x)
    seconds = sum(first.batch_seconds) * n / (len(first.batch_seconds) * first.batch_size)
    c1 = float(c2st_report(first.x, ref, seed=0)["headline"])
    trial: dict[str, Any] = {"spec": spec.name, "seconds": seconds, "c2st": c1}
    if c1 > gate:
        trial["verdict"] = "rejected"
        return trial
    second = run_sampler(model, spec, n, batch_size, CONFIRM_SEED)
    c2 = float(c2st_report(second.x, ref, seed=1)["headline"])
    trial["c2st_confirm"] = c2
    trial["verdict"] = "chosen" if c2 <= gate else "rejected on confirmation"
    return trial


def _bar(progress: bool, total: int, desc: str) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False)


def auto_file(checkpoint: str | Path, num_shadow: int, tag: str = "") -> Path:
    """Where a checkpoint folder keeps its auto choice for ``num_shadow`` shadow series (``tag``:
    :func:`pyfdc.core.model.clip_tag`, so sampling with the clip off keeps its own)."""
    from pyfdc.e2crf.calibrate import CALIBRATIONS_DIR

    return Path(checkpoint) / CALIBRATIONS_DIR / f"auto-{num_shadow}{tag}.json"


def model_auto_choice(model: Any, num_shadow: int = AUTO_SHADOW, progress: bool = True,
                      say: Callable[[str], None] | None = None) -> AutoChoice:
    """The auto choice for ``model``: from its memory, else its checkpoint folder (for these exact weights and clip),
    else made here by :func:`choose_sampler` and kept in both (memory only for a shipped or read-only one)."""
    from pyfdc.core.model import clip_tag, sampling_fingerprint
    from pyfdc.e2crf.calibrate import keep_in_checkpoint, load_kept

    say = say or (lambda line: None)
    mid, key = sampling_fingerprint(model), ("auto", num_shadow, clip_tag(model))
    choice = model.calibrations.get(key)
    if choice is not None and choice.model_id == mid:
        return choice
    folder = model.meta.get("checkpoint")
    path = None if folder is None else auto_file(folder, num_shadow, clip_tag(model))
    def problem(c: AutoChoice) -> str | None:
        if c.clip_tag is None:
            return "made by an older pyfdc that did not record the clip setting"
        if c.model_id != mid:
            return "made for other weights (the checkpoint was retrained)"
        if c.rules != AUTO_RULES:
            return "made by an older pyfdc (its E2-CRF candidates were calibrated by other rules)"
        return None if c.reference == REFERENCE else f"made against {c.reference}, not {REFERENCE}"

    choice = load_kept(path, AutoChoice.load, problem, say)
    if choice is None:
        say(f"choosing a sampler for this model (first use: an EM-1000 shadow set of {num_shadow} series, "
            "then candidates cheapest first; no data)")
        choice = choose_sampler(model, num_shadow, AUTO_CANDIDATES, progress=progress, say=say, reference=REFERENCE)
        say(f"chosen in {choice.seconds:.0f} s{keep_in_checkpoint(choice, path)}: {choice.describe()}")
    model.calibrations[key] = choice
    return choice

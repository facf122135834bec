"""``E2CRFConfig``: what the E2-CRF cache does, as independent fields, and the one parser of them.

The cache recomputes a fixed ``budget`` share of the ``N'`` tokens per cached step (the static-shape
step, :mod:`pyfdc.e2crf.step`): the always-recomputed band ``0..K`` (Eq. 13), ``num_probes`` random
probes (Eq. 14 error feedback), then the tokens with the highest drift since their last recompute,
ranked by plain drift ``δ`` or by the paper's energy-weighted score ``δ (ε + ‖z‖²) / τ0``. Cached tokens
answer from their cumulative residual (``features``, the paper's) or from the closed-form Gaussian
``E[ε | z, t]`` plus the network's departure from it at their last recompute (``gaussian``).

``budget=None`` (the default) is the model's own calibration (:mod:`pyfdc.e2crf.calibrate`): the
cheapest budget whose shadow samples keep the model's uncached distribution, uncached when none does.
The same fields come in from keyword arguments, CLI flags (``--e2crf-*``), front specs
(``e2crf(budget=0.35):1000``) and calibration files, all through :meth:`E2CRFConfig.from_options` /
:meth:`E2CRFConfig.from_dict`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

RANKINGS = ("drift", "energy")
CACHED_OUTPUTS = ("auto", "features", "gaussian")
# fields of the first-generation config (before issue 22): read from old calibration files and mapped
_LEGACY_MODES = {"full": ("energy", True, True), "no_energy": ("drift", True, True),
                 "no_feedback": ("energy", False, True), "fixed": ("energy", False, False)}
_LEGACY_DROPPED = ("solver", "compile", "reuse", "dense_fraction")
# The engine that binds a config to a model (pyfdc.e2crf.policy.bind), registered by the engine itself when the
# package loads, so these options import nothing above them.
_ENGINE: Callable[..., Any] | None = None


def _check_number(name: str, value: Any, *, low: float, high: float = math.inf,
                  low_open: bool = False, allow_inf: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"E2CRFConfig.{name} must be a number, got {value!r}")
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"E2CRFConfig.{name} must be finite, got {value!r}")
    if value < low or (low_open and value == low) or value > high:
        lo = "(" if low_open else "["
        raise ValueError(f"E2CRFConfig.{name} must lie in {lo}{low}, {high}], got {value!r}")


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"E2CRFConfig.{name} must be an int >= {low}, got {value!r}")


@dataclass(frozen=True)
class E2CRFConfig:
    """E2-CRF options; every field is independent of the others.

    budget: share of the ``N'`` tokens recomputed per cached step, in (0, 1]; ``None`` = this model's
        calibrated choice for the run's solver and step count.
    ranking: ``drift`` (plain ``δ_κ = ‖z_κ − z_ref,κ‖``) or ``energy`` (the paper's ``δ_κ / τ_κ`` with
        ``τ_κ = τ0 / (ε + ‖z_κ‖²)``, which ranks low-energy, high-frequency tokens last).
    cached_output: ``features``, ``gaussian`` or ``auto`` (gaussian where the model has token moments and
        spectral tokens, :func:`uses_gaussian_output`).
    feedback: probes with the Eq. 14 correction (``False``: the paper's "no feedback" ablation).
    warn_refresh: refresh a sample whose event intensity passes ``tau_warn`` (Alg. 1 l.16).
    K: always-recomputed band ``0..K``; ``None`` = ⌊N'/10⌋ for spectral tokens, 0 for time-domain ones.
    R: full refresh every ``R`` steps. num_probes: probes per sample and cached step (with ``feedback``).
    tau0, eps: the drift threshold; tokens over it that the budget leaves cached are counted
        (``SamplingStats.budget_overflow``); it does not change the ranking.
    tau_safe, tau_warn, alpha_max, eta: Eq. 12/14 (correction above ``tau_safe``, ``α = min(alpha_max, r/2)``).
    probe_seed_offset: the probe stream's seed is the noise seed plus this.
    tail: share of the run's last steps on which every token is recomputed (the cached step is off there),
        in [0, 1); ``None`` (the default) = none with a given budget, the calibration's choice with
        ``budget=None``. The cache's error at the low-noise end is not denoised away by later steps: on the
        shipped ECG model a 5% tail took budget 0.2's largest statistic shift from 1.5 to 0.04 sd
        (``benchmarks/RESULTS.md``).
    head_every: the model's time-domain head (``ModelConfig.time_head``) runs on a cached step when it last
        ran ``head_every`` or more steps before; the cached steps between add its correction from that run.
        Refreshes always run it. ``None`` (the default) = every step (1) with a given budget, the
        calibration's choice with ``budget=None``. The head costs a cached step as much as a full one whatever
        the budget (30% of the shipped ECG model's budget-0.2 step at batch 64), and its correction changes
        slowly from step to step (``benchmarks/RESULTS.md``).
    """

    budget: float | None = None
    ranking: str = "drift"
    cached_output: str = "auto"
    feedback: bool = True
    warn_refresh: bool = True
    K: int | None = None
    R: int = 50
    num_probes: int = 2
    tau0: float = 1.0
    eps: float = 1e-6
    tau_safe: float = 0.1
    tau_warn: float = 0.5
    alpha_max: float = 0.1
    eta: float = 1e-6
    probe_seed_offset: int = 1_000_003
    tail: float | None = None
    head_every: int | None = None

    def __post_init__(self) -> None:
        if self.budget is not None:
            _check_number("budget", self.budget, low=0.0, high=1.0, low_open=True)
        if self.ranking not in RANKINGS:
            raise ValueError(f"E2CRFConfig.ranking must be one of {RANKINGS}, got {self.ranking!r}")
        if self.cached_output not in CACHED_OUTPUTS:
            raise ValueError(f"E2CRFConfig.cached_output must be one of {CACHED_OUTPUTS}, got {self.cached_output!r}")
        for name in ("feedback", "warn_refresh"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"E2CRFConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.K is not None:
            _check_int("K", self.K, 0)
        _check_int("R", self.R, 1)
        if self.head_every is not None:
            _check_int("head_every", self.head_every, 1)
        _check_int("num_probes", self.num_probes, 0)
        _check_number("tau0", self.tau0, low=0.0, low_open=True, allow_inf=True)
        _check_number("eps", self.eps, low=0.0, low_open=True)
        _check_number("tau_safe", self.tau_safe, low=0.0, allow_inf=True)
        _check_number("tau_warn", self.tau_warn, low=0.0, low_open=True, allow_inf=True)
        if self.tau_safe > self.tau_warn:
            raise ValueError(f"E2CRFConfig.tau_safe ({self.tau_safe}) must be <= tau_warn ({self.tau_warn})")
        _check_number("alpha_max", self.alpha_max, low=0.0, high=1.0)
        _check_number("eta", self.eta, low=0.0, low_open=True)
        if isinstance(self.probe_seed_offset, bool) or not isinstance(self.probe_seed_offset, int):
            raise ValueError(f"E2CRFConfig.probe_seed_offset must be an int, got {self.probe_seed_offset!r}")
        if self.tail is not None:
            _check_number("tail", self.tail, low=0.0, high=1.0)
        if self.tail == 1.0:
            raise ValueError("E2CRFConfig.tail must be < 1 (tail 1 recomputes every step: sample uncached instead)")

    # ------------------------------------------------------------------ per model
    @property
    def head_period(self) -> int:
        """Steps between runs of the time head on cached steps (``head_every``, 1 when ``None``)."""
        return self.head_every or 1

    def tail_steps(self, steps: int) -> int:
        """How many of a run's ``steps`` last steps recompute every token (``ceil(tail · steps)``)."""
        return int(math.ceil(self.tail * steps - 1e-9)) if self.tail else 0

    @property
    def probes(self) -> int:
        """Probes per cached step (0 without ``feedback``)."""
        return self.num_probes if self.feedback else 0

    def band(self, num_tokens: int, kind: str = "freq") -> int:
        """Resolved K for ``num_tokens`` = N' tokens of a ``kind`` transform (``freq``, ``chart``, ``time``)."""
        if self.K is not None:
            return self.K
        return 0 if kind == "time" else num_tokens // 10

    def check_tokens(self, num_tokens: int, kind: str = "freq") -> None:
        """A one-line ValueError when the options cannot hold for ``num_tokens`` = N' tokens: a band that
        covers every token, more probes than tokens outside it, or a band + probes over the budget."""
        K, P = self.band(num_tokens, kind), self.probes
        if self.K is not None and self.K >= num_tokens - 1:
            raise ValueError(f"E2CRFConfig.K = {self.K} puts all N' = {num_tokens} tokens in the always-recomputed "
                             f"band 0..K, so nothing would be cached; K must be < {num_tokens - 1}")
        if P > num_tokens - K - 1:
            raise ValueError(f"E2CRFConfig.num_probes = {P} exceeds the {num_tokens - K - 1} tokens outside the "
                             f"band 0..{K} (N' = {num_tokens})")
        if self.budget is not None and self.K is not None:
            k = int(math.ceil(self.budget * num_tokens - 1e-9))
            if K + 1 + P > k:
                raise ValueError(f"E2CRFConfig: the band 0..{K} and {P} probes ({K + 1 + P} tokens) exceed the "
                                 f"budget {self.budget} x N' = {k} tokens; lower K or num_probes, or raise the budget")

    def for_model(self, model: Any) -> "E2CRFConfig":
        """This config with ``cached_output='auto'`` resolved for ``model``, and no ``head_every`` where the model
        has no time head (there it changes nothing)."""
        out = self
        if out.cached_output == "auto":
            out = dataclasses.replace(out, cached_output="gaussian" if uses_gaussian_output(model) else "features")
        if out.head_every is not None and not has_time_head(model):
            out = dataclasses.replace(out, head_every=None)
        return out

    def bind(self, model: Any, *, steps: int, method: str = "em", compile: bool = False,
             progress: bool = False) -> Any:
        """The cache for one sampling run of ``model`` (what :class:`~pyfdc.sampling.sampler.Sampler` calls);
        ``None`` when the model's calibration says to sample uncached (:func:`pyfdc.e2crf.policy.bind`)."""
        if _ENGINE is None:  # pragma: no cover - the package's __init__ always imports the engine
            raise RuntimeError("the E2-CRF engine is not loaded: import pyfdc.e2crf")
        return _ENGINE(self, model, steps=steps, method=method, compile=compile, progress=progress)

    def describe(self) -> str:
        """One line: budget, ranking, cached output (and any ablation)."""
        budget = "the model's calibrated budget" if self.budget is None else f"budget {self.budget:g}"
        text = f"{budget}, {'plain-δ' if self.ranking == 'drift' else 'energy-weighted'} ranking, " \
               f"{self.cached_output} cached output"
        if self.tail:
            text += f", every token on the last {self.tail:.0%} of steps"
        if self.head_every is not None and self.head_every > 1:
            text += f", the time head every {self.head_every} steps"
        off = [name for name in ("feedback", "warn_refresh") if not getattr(self, name)]
        return text + (f", no {' / no '.join(off)}" if off else "")

    # ------------------------------------------------------------------ the one parser
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields (``inf`` as the string ``"inf"``)."""
        return {k: ("inf" if isinstance(v, float) and math.isinf(v) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Any) -> "E2CRFConfig | None":
        """Inverse of :meth:`to_dict`. Also reads the first generation's fields (``mode``, ``solver``, ...):
        ``mode='uncached'`` gives ``None`` (sample uncached); the paper's variable recompute sets
        (``budget`` null with a cached mode) are refused with one line."""
        if not isinstance(d, Mapping):
            raise ValueError(f"an E2-CRF config must be a JSON object, got {type(d).__name__}")
        d = {k: (math.inf if v == "inf" else v) for k, v in d.items()}
        if "mode" in d or any(k in d for k in _LEGACY_DROPPED):
            return _from_legacy(d)
        return _build(cls, d)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], base: "E2CRFConfig | None" = None) -> "E2CRFConfig":
        """``base`` (default ``E2CRFConfig()``) with ``options`` (values may be strings, as in a front spec
        ``e2crf(budget=0.35,ranking=energy)`` or CLI flags), typed by the field they set."""
        base = base or cls()
        fields = {f.name: f for f in dataclasses.fields(cls)}
        typed: dict[str, Any] = {}
        for k, v in options.items():
            if k not in fields:
                raise ValueError(f"unknown E2-CRF option {k!r} (known: {', '.join(fields)})")
            typed[k] = _typed(k, v, getattr(base, k))
        return dataclasses.replace(base, **typed)


def _typed(name: str, v: Any, current: Any) -> Any:
    """A string option value as the type of field ``name`` (non-strings pass through; 0/1 for booleans)."""
    if name in ("feedback", "warn_refresh") and not isinstance(v, bool) and v in (0, 1):
        return bool(v)
    if not isinstance(v, str):
        return v
    s = v.strip()
    if name in ("budget", "K", "tail", "head_every") and s.lower() in ("none", "auto", ""):
        return None
    if name in ("feedback", "warn_refresh"):
        if s.lower() in ("1", "true", "on", "yes"):
            return True
        if s.lower() in ("0", "false", "off", "no"):
            return False
        raise ValueError(f"E2-CRF option {name}={v!r} is not a boolean (on/off)")
    if name in ("ranking", "cached_output"):
        return s
    try:
        if name in ("K", "R", "num_probes", "probe_seed_offset", "head_every"):
            return int(s)
        return float(s)
    except ValueError:
        raise ValueError(f"E2-CRF option {name}={v!r} is not a number") from None


def _build(cls: type, d: Mapping[str, Any]) -> E2CRFConfig:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown E2-CRF config fields {unknown}")
    return cls(**d)


def _from_legacy(d: dict[str, Any]) -> E2CRFConfig | None:
    mode = d.pop("mode", "full")
    for k in _LEGACY_DROPPED:
        v = d.pop(k, None)
        if k == "reuse" and v not in (None, "frozen"):
            _refuse(f"reuse={v!r}")
    if mode == "uncached":
        return None
    if mode not in _LEGACY_MODES:
        _refuse(f"mode={mode!r}")
    if d.get("budget") is None:
        _refuse("the paper's variable recompute sets (no budget)")
    if d.get("cached_output") == "x0":
        _refuse("cached_output='x0'")
    ranking, feedback, warn = _LEGACY_MODES[mode]
    return _build(E2CRFConfig, {**d, "ranking": ranking, "feedback": feedback, "warn_refresh": warn})


def _refuse(what: str) -> None:
    raise ValueError(f"this E2-CRF config uses {what}, which pyfdc no longer offers (measured neutral or "
                     f"harmful, or kept only as a test reference); calibrate again: pyfdc calibrate --checkpoint ...")


def has_time_head(model: Any) -> bool:
    """Whether ``model``'s network ends in a time-domain head (``ModelConfig.time_head``), which ``head_every``
    lets cached steps reuse."""
    return getattr(model.net, "time_head", None) is not None


def uses_gaussian_output(model: Any) -> bool:
    """Whether ``cached_output='auto'`` means ``gaussian`` for ``model``: it has token moments and spectral
    tokens (on time-domain tokens the diagonal Gaussian ignores the strong coupling of neighbouring steps,
    and it did not lower the cache error there: ``benchmarks/RESULTS.md``)."""
    return getattr(model, "token_moments", None) is not None and model.transform.kind != "time"

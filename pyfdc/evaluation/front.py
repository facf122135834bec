"""The speed–quality front: every sampler timed and scored against the uncached 1,000-step sampler.

One process, one model, same seeds. The reference is uncached EM at 1,000 steps with seed
``ref_seed``; every candidate uses ``seed`` (another seed), and the **floor** is uncached EM at
1,000 steps with that same ``seed`` — so the floor is also the same-noise partner of every
candidate for the paired-deviation diagnostic. Samplers are named by spec strings::

    em:1000   ddim:100   dpm2m:25   e2crf:1000   e2crf(budget=0.35):250   e2crf(budget=0.5,solver=dpm2m):50

``e2crf`` is Euler–Maruyama (or ``solver=``) with the E2-CRF cache; its options are fields of
:class:`~pyfdc.e2crf.E2CRFConfig` (parsed by ``E2CRFConfig.from_options``, as the CLI's flags), and without
a ``budget`` it is the model's own calibration. Wall time is the median over
batches of one run (each batch of ``batch_size`` series is one timed repeat), after a warm-up of
every sampler; ``batch1`` samples are also timed one at a time. Sampling is batch-invariant (noise
per sample id), so the quality of a run does not depend on how it was batched — only its time.
Generated sets are saved under ``out/samples`` and reused on a rerun (the run can be resumed).
"""
from __future__ import annotations

import json
import math
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["SamplerSpec", "parse_spec", "DEFAULT_SPECS", "model_fingerprint", "run_sampler", "run_front", "front_table"]

UNCACHED = ("em", "ddim", "dpm2m")
UNCACHED_OPTIONS = ("compile", "precision")
_SAMPLER_KEYS = ("compile", "precision", "solver")  # options of the Sampler, not of the cache
DEFAULT_SPECS: tuple[str, ...] = (
    *(f"em:{s}" for s in (500, 250, 100, 50, 25)),
    *(f"dpm2m:{s}" for s in (1000, 250, 100, 50, 25, 10)),
    *(f"ddim:{s}" for s in (250, 50)),
    "e2crf:1000", *(f"e2crf(budget={b}):1000" for b in (0.2, 0.35, 0.5, 0.7)),
    "e2crf(budget=0.5,ranking=energy):1000", "e2crf(budget=0.5,feedback=off):1000",
    "e2crf(budget=0.5,cached_output=features):1000", "e2crf(budget=0.5):250", "e2crf(budget=0.7):100",
)
_SPEC = re.compile(r"^(?P<kind>[a-z0-9]+)(?:\((?P<opts>[^)]*)\))?:(?P<steps>\d+)$")


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler to run: ``kind`` (em | ddim | dpm2m | e2crf), ``steps`` and E2-CRF options."""

    kind: str
    steps: int
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        return f"{self.kind}{f'({opts})' if opts else ''}:{self.steps}"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_")

    @property
    def uncached(self) -> bool:
        return self.kind in UNCACHED

    @property
    def method(self) -> str:
        """The solver: the kind itself, or an ``e2crf`` spec's ``solver`` option (default ``em``)."""
        return str(dict(self.options).get("solver", "em")) if self.kind == "e2crf" else self.kind

    def sampler_options(self) -> dict[str, Any]:
        """Keyword options of :class:`pyfdc.sampling.sampler.Sampler`: compile, precision (uncached), cache (e2crf)."""
        opts = dict(self.options)
        from pyfdc.sampling.solvers import PRECISIONS, SAMPLING_METHODS

        out: dict[str, Any] = {"compile": bool(opts.get("compile", 0)), "precision": opts.get("precision", "fp32")}
        if out["precision"] not in PRECISIONS or opts.get("compile", 0) not in (0, 1):
            raise ValueError(f"compile must be 0 or 1 and precision one of {PRECISIONS}")
        if self.method not in SAMPLING_METHODS:
            raise ValueError(f"solver must be one of {SAMPLING_METHODS}, got {self.method!r}")
        if self.kind == "e2crf":
            out["cache"] = self.e2crf_config()
        return out

    def e2crf_config(self) -> Any:
        from pyfdc.e2crf import E2CRFConfig

        return E2CRFConfig.from_options({k: v for k, v in self.options if k not in _SAMPLER_KEYS})


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_spec(text: str) -> SamplerSpec:
    """``"e2crf(budget=0.35,ranking=energy):250"`` -> :class:`SamplerSpec`; a one-line ValueError otherwise."""
    m = _SPEC.match(text.strip().replace(" ", ""))
    if m is None:
        raise ValueError(f"sampler spec {text!r} is not KIND[(k=v,...)]:STEPS, e.g. 'em:100' or 'e2crf(budget=0.35):1000'")
    kind, steps = m["kind"], int(m["steps"])
    if kind not in (*UNCACHED, "e2crf"):
        raise ValueError(f"sampler spec {text!r}: kind must be one of {(*UNCACHED, 'e2crf')}, got {kind!r}")
    if steps < 1:
        raise ValueError(f"sampler spec {text!r}: steps must be >= 1")
    opts: list[tuple[str, Any]] = []
    for item in filter(None, (m["opts"] or "").split(",")):
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ValueError(f"sampler spec {text!r}: option {item!r} is not key=value")
        opts.append((key, _value(val)))
    if kind != "e2crf" and any(k not in UNCACHED_OPTIONS for k, _ in opts):
        raise ValueError(f"sampler spec {text!r}: uncached samplers take only {UNCACHED_OPTIONS}")
    spec = SamplerSpec(kind, steps, tuple(opts))
    try:
        spec.sampler_options()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sampler spec {text!r}: {exc}") from exc
    return spec


@dataclass
class SamplerRun:
    """Samples ``x (S, N, M)`` of one spec, per-batch wall seconds, mean recomputed fraction f."""

    spec: SamplerSpec
    x: np.ndarray
    batch_seconds: list[float]
    batch_size: int
    recomputed_fraction: float = 1.0
    batch1_seconds: list[float] = field(default_factory=list)


def _draw(model: Any, spec: SamplerSpec, n: int, seed: int, offset: int) -> tuple[torch.Tensor, float]:
    """One batch of ``n`` series (token space) with noise ids ``offset..offset+n-1``; returns (z, f)."""
    from pyfdc.sampling.sampler import Sampler

    sampler = Sampler(model, spec.method, **spec.sampler_options())
    z = sampler.sample_tokens(n, spec.steps, batch_size=n, seed=seed, progress=False, sample_offset=offset)
    assert sampler.stats is not None
    return z, sampler.stats.mean_recomputed_fraction


def run_sampler(model: Any, spec: SamplerSpec, num_samples: int, batch_size: int, seed: int,
                batch1: int = 0, bar: Any = None) -> SamplerRun:
    """Run ``spec`` on ``num_samples`` series in batches, timing each batch (and ``batch1`` singles)."""
    zs, secs, fs = [], [], []
    with torch.inference_mode():
        for b0 in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - b0)
            t0 = time.perf_counter()
            z, f = _draw(model, spec, n, seed, b0)
            dt = time.perf_counter() - t0
            zs.append(z)
            if n == batch_size:  # a short last batch is not a like-for-like repeat
                secs.append(dt)
            fs.append((f, n))
            if bar is not None:
                bar.update(n * spec.steps)
        singles = []
        for j in range(batch1):
            t0 = time.perf_counter()
            _draw(model, spec, 1, seed, j)
            singles.append(time.perf_counter() - t0)
    x = model.decode_samples(torch.cat(zs)).detach().cpu().numpy()
    f = sum(a * n for a, n in fs) / sum(n for _, n in fs)
    return SamplerRun(spec, x, secs or [dt], batch_size, f, singles)


def model_fingerprint(model: Any) -> str:
    """SHA-256 prefix over the network's weights, the token scaling, the support clip and the exact structure decoding
    imposes: saved runs are reused only for the model that drew them."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    ts = getattr(model, "token_scaler", None)
    if ts is not None:
        h.update(ts.mean.tobytes() + ts.std.tobytes())
    bounds = getattr(model, "bounds", None)
    if bounds is not None and getattr(model, "clip", False):  # clipped samples differ from unclipped ones
        h.update(b"clip" + bounds.low.tobytes() + bounds.high.tobytes())
    exact = getattr(model, "exact", None)
    if exact is not None and getattr(model, "clip", False):
        h.update(b"exact" + json.dumps(exact.to_dict(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def _save_run(folder: Path, run: SamplerRun, model_id: str, seed: int | None = None) -> None:
    from pyfdc._io import atomic_path, atomic_write_text

    with atomic_path(folder / f"{run.spec.slug}.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, run.x.astype(np.float32))
    atomic_write_text(folder / f"{run.spec.slug}.json", json.dumps({
        "spec": run.spec.name, "model": model_id, "batch_seconds": run.batch_seconds, "batch_size": run.batch_size,
        "recomputed_fraction": run.recomputed_fraction, "batch1_seconds": run.batch1_seconds, "seed": seed}))


def _load_run(folder: Path, spec: SamplerSpec, num_samples: int, batch_size: int,
              model_id: str, seed: int | None = None) -> SamplerRun | None:
    """A saved run of ``spec`` for this model and size, or ``None``. With ``seed``, a run that recorded
    another seed is not reused (the reference folder holds one seed's set; older files record none)."""
    arr, meta = folder / f"{spec.slug}.npy", folder / f"{spec.slug}.json"
    if not (arr.is_file() and meta.is_file()):
        return None
    try:
        info = json.loads(meta.read_text())
        x = np.load(arr, allow_pickle=False)
    except (ValueError, OSError):
        return None  # unreadable leftovers are regenerated, not trusted
    if (info.get("spec") != spec.name or info.get("model") != model_id or len(x) != num_samples
            or info.get("batch_size") != batch_size):
        return None
    if seed is not None and info.get("seed") is not None and info["seed"] != seed:
        return None
    return SamplerRun(spec, x, info["batch_seconds"], batch_size, info["recomputed_fraction"],
                      info.get("batch1_seconds", []))


def _row(run: SamplerRun, ref: np.ndarray, floor_run: SamplerRun, base_s: float, seed: int) -> dict[str, Any]:
    from pyfdc.evaluation.metrics import sliced_wasserstein
    from pyfdc.e2crf.shadow import band_spectral_error, paired_deviation
    from pyfdc.evaluation.quality import c2st_report

    med = statistics.median(run.batch_seconds)
    row: dict[str, Any] = {
        "sampler": run.spec.name, "kind": run.spec.kind, "steps": run.spec.steps,
        "uncached": run.spec.uncached, "batch_seconds": med, "speedup_vs_em1000": base_s / med,
        "recomputed_fraction": run.recomputed_fraction, "token_layer_flops_rel": run.recomputed_fraction
        * run.spec.steps / 1000.0, "c2st": c2st_report(run.x, ref, seed=seed),
        "band_error": band_spectral_error(run.x, ref),
        "sw_time": float(sliced_wasserstein(run.x, ref, n_projections=2000, seed=seed)),
    }
    if run is not floor_run:
        row["paired_deviation"] = paired_deviation(run.x, floor_run.x)
    if run.batch1_seconds:
        row["batch1_seconds"] = statistics.median(run.batch1_seconds)
    return row


def c2st_margin(a: dict[str, Any], b: dict[str, Any]) -> float:
    """1.96 standard errors of the difference of two rows' headline C2ST accuracies (binomial)."""
    def var(r: dict[str, Any]) -> float:
        p, n = r["c2st"]["headline"], 2 * r["c2st"]["hgb"]["n_per_side"]
        return p * (1 - p) / n
    return 1.96 * math.sqrt(var(a) + var(b))


def _verdicts(rows: list[dict[str, Any]]) -> None:
    """Mark each cached row: below the uncached front? speedup over the best uncached at equal quality."""
    unc = [r for r in rows if r["uncached"]]  # the floor is uncached EM-1000 too
    for r in rows:
        if r["uncached"]:
            continue
        acc = r["c2st"]["headline"]
        no_slower = [u for u in unc if u["batch_seconds"] <= r["batch_seconds"]]
        # None: faster than every uncached run, so the front says nothing there (not a win)
        r["below_front"] = all(acc < u["c2st"]["headline"] for u in no_slower) if no_slower else None
        # the same question with the sampling error of both accuracies: only a gap larger than
        # 1.96 standard errors of the difference counts (a "yes" above may be a tie)
        r["below_front_significant"] = (all(acc + c2st_margin(r, u) < u["c2st"]["headline"] for u in no_slower)
                                        if no_slower else None)
        as_good = [u for u in unc if u["c2st"]["headline"] <= acc]
        r["speedup_at_equal_quality"] = (min(u["batch_seconds"] for u in as_good) / r["batch_seconds"]
                                         if as_good else None)


def run_front(model: Any, out: str | Path, specs: list[str] | tuple[str, ...] = DEFAULT_SPECS,
              num_samples: int = 512, batch_size: int = 64, seed: int = 2, ref_seed: int = 0,
              batch1: int = 0, progress: bool = True) -> dict[str, Any]:
    """Run the front and write ``front.json``, ``front.md`` and ``front.png`` into ``out``."""
    from tqdm.auto import tqdm

    from pyfdc.evaluation import plots
    from pyfdc._io import atomic_write_text

    parsed = [parse_spec(s) for s in specs]
    names = [p.name for p in parsed]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate sampler specs in {names}")
    folder = Path(out) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    model_id = model_fingerprint(model)
    em1000 = SamplerSpec("em", 1000)
    for spec in {em1000, *parsed}:  # warm-up: allocator, thread pools, first-call paths
        _draw(model, SamplerSpec(spec.kind, 3, spec.options), min(batch_size, 8), seed, 0)
    todo = [("reference", em1000, ref_seed), ("floor", em1000, seed)] + [(p.name, p, seed) for p in parsed]
    total = sum(s.steps for _, s, _ in todo) * num_samples
    bar = tqdm(total=total, desc="front", unit="series-step", disable=not progress, dynamic_ncols=True)
    runs: dict[str, SamplerRun] = {}
    try:
        for label, spec, sd in todo:
            sub = folder / ("reference" if label == "reference" else f"seed{sd}")
            sub.mkdir(exist_ok=True)
            run = _load_run(sub, spec, num_samples, batch_size, model_id, sd)
            if run is None:
                bar.set_postfix_str(label)
                run = run_sampler(model, spec, num_samples, batch_size, sd, batch1 if label != "reference" else 0, bar)
                _save_run(sub, run, model_id, sd)
            else:
                bar.update(spec.steps * num_samples)
            runs[label] = run
    finally:
        bar.close()
    ref, floor = runs["reference"].x, runs["floor"]
    base_s = statistics.median(floor.batch_seconds)
    rows = [dict(_row(floor, ref, floor, base_s, seed), sampler="em:1000 (floor)")]
    rows += [_row(runs[p.name], ref, floor, base_s, seed) for p in parsed if p != em1000]
    _verdicts(rows)
    result = {"num_samples": num_samples, "batch_size": batch_size, "seed": seed, "ref_seed": ref_seed,
              "threads": torch.get_num_threads(), "floor": rows[0], "rows": rows,
              "model": str(getattr(model, "meta", {}).get("checkpoint", "?")), "model_id": model_id}
    out = Path(out)
    atomic_write_text(out / "front.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "front.md", front_table(result) + "\n")
    plots.plot_front(rows, out / "front.png", title=f"speed-quality front ({num_samples} vs {num_samples}, "
                     f"batch {batch_size}, {result['threads']} threads)")
    return result


def front_table(result: dict[str, Any]) -> str:
    """Markdown table of a :func:`run_front` result."""
    b1 = any("batch1_seconds" in r for r in result["rows"])
    head = ("| sampler | s / batch | speedup vs EM-1000 | f | C2ST (headline) | hgb | linear | "
            "band error low / mid / high / top | SW₂ | below front | speedup at equal C2ST |"
            + (" s / series at batch 1 |" if b1 else ""))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in result["rows"]:
        c = r["c2st"]
        bands = " / ".join(f"{v:+.0%}" for v in r["band_error"].values())
        below = "–" if r["uncached"] else {True: "**yes**", False: "no", None: "faster than all"}[r["below_front"]]
        if r.get("below_front") and not r.get("below_front_significant"):
            below = "yes, within noise"
        eq = r.get("speedup_at_equal_quality")
        eqs = "–" if r["uncached"] else ("none as good" if eq is None else f"{eq:.2f}×")
        line = (f"| {r['sampler']} | {r['batch_seconds']:.2f} | {r['speedup_vs_em1000']:.2f}× | "
                f"{r['recomputed_fraction']:.2f} | {c['headline']:.3f} ({c['headline_classifier']}) | "
                f"{c['hgb']['accuracy']:.3f} [{c['hgb']['ci_low']:.2f}, {c['hgb']['ci_high']:.2f}] | "
                f"{c['linear']['accuracy']:.3f} | {bands} | {r['sw_time']:.4f} | {below} | {eqs} |")
        if b1:
            line += f" {r.get('batch1_seconds', float('nan')):.3f} |"
        lines.append(line)
    return "\n".join(lines)

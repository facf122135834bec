"""The suite's stages after training (see ``benchmarks/suite.py``): front, sample, score, report."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pyfdc._io import atomic_write_text

FRONT_SPECS = ("em:250", "em:100", "dpm2m:50", "dpm2m:25")
FRONT_SEED, REF_SEED = 2, 0


def _json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, default=float) + "\n")


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _model(folder: Path) -> Any:
    from pyfdc.core.checkpoint import load_checkpoint

    return load_checkpoint(folder)


def config_spec(config: Any, steps: int) -> str:
    """The front spec string of an :class:`~pyfdc.e2crf.E2CRFConfig` (its non-default fields); ``None``
    (a calibration that samples uncached) is uncached EM."""
    from pyfdc.e2crf import E2CRFConfig

    if config is None:
        return f"em:{steps}"
    base = E2CRFConfig()
    opts = [f"{f.name}={getattr(config, f.name):g}" if isinstance(getattr(config, f.name), float)
            else f"{f.name}={getattr(config, f.name)}"
            for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(base, f.name)]
    return f"e2crf({','.join(opts)}):{steps}" if opts else f"e2crf:{steps}"


def default_e2crf_spec(model: Any, steps: int = 1000) -> str:
    """What ``pyfdc sample --sampler e2crf --steps STEPS`` runs on ``model`` (its calibration, made on first
    use and kept in the checkpoint folder), as a front spec."""
    from pyfdc.e2crf.calibrate import model_calibration

    return config_spec(model_calibration(model, steps, progress=False, say=print).config, steps)


def front_stage(name: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The frequency model's front against its EM-1000 (saved samples are reused on a rerun)."""
    from pyfdc.evaluation.front import run_front

    model = _model(folder / "freq")
    specs = [*FRONT_SPECS, default_e2crf_spec(model, 1000)]
    return run_front(model, folder / "front", specs, num_samples=args.num_samples, batch_size=args.batch_size,
                     seed=FRONT_SEED, ref_seed=REF_SEED)


def reference_samples(folder: Path) -> np.ndarray | None:
    """The frequency model's uncached EM-1000 set (seed 0): the front's, else the one the studies draw
    without a front (``em1000_seed0.npy``: ``studies/recipe_on_validation.py``, ``studies/auto_choice.py``);
    ``None`` before either."""
    for path in (folder / "front" / "samples" / "reference" / "em_1000.npy", folder / "em1000_seed0.npy"):
        if path.is_file():
            return np.load(path)
    return None


def sample_stage(name: str, folder: Path, args: argparse.Namespace) -> None:
    """The time-domain model's EM-1000 set with the reference's seed and size."""
    from pyfdc.sampling.sampler import Sampler

    out = folder / "time_em1000.npy"
    if out.is_file() and len(np.load(out)) == args.num_samples:
        return
    model = _model(folder / "time")
    x = Sampler(model, "em").sample(args.num_samples, steps=1000, batch_size=args.batch_size, seed=REF_SEED)
    from pyfdc._io import atomic_path

    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, x.numpy())


def score_stage(name: str, ds: Any, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Both models' EM-1000 sets against the held-out split; field scores of the frequency model."""
    from pyfdc.evaluation.field_scores import discriminative_score, predictive_score
    from pyfdc.evaluation.quality import data_report

    path = folder / "scores.json"
    scores = _read(path) or {}
    from suite_data import znorm_like

    sets = {"freq": reference_samples(folder), "time": _maybe(folder / "time_em1000.npy")}
    normalised = ds.meta.get("per_series_znorm_ddof") is not None
    for domain, x in sets.items():
        if x is None or (domain in scores and scores[domain].get("per_series_znorm", False) == normalised):
            continue
        if normalised:  # the raw samples' C2ST, before the archive's own normalisation, is kept beside it
            raw = data_report(x, ds.train, ds.test, repeats=args.c2st_repeats, seed=0, gaussian=False)
            scores[f"{domain}_raw"] = raw["generated"]
        scores[domain] = data_report(znorm_like(ds, x), ds.train, ds.test, repeats=args.c2st_repeats, seed=0,
                                     gaussian=domain == "freq")
        scores[domain]["per_series_znorm"] = normalised
        _json(path, scores)
    it_disc, it_pred = args.field_iterations
    field = {"runs": args.field_runs, "iterations": [it_disc, it_pred]}
    if args.field_runs > 0 and sets["freq"] is not None and scores.get("field", {}).get("settings") != field:
        real = ds.test
        sets["freq"] = znorm_like(ds, sets["freq"])
        scores["field"] = {
            "settings": field,
            "freq": {"discriminative": discriminative_score(real, sets["freq"], it_disc, runs=args.field_runs),
                     "predictive": predictive_score(real, sets["freq"], it_pred, runs=args.field_runs)},
            "train": {"predictive": predictive_score(real, ds.train, it_pred, runs=args.field_runs)},
        }
        _json(path, scores)
    return scores


def _maybe(path: Path) -> np.ndarray | None:
    return np.load(path) if path.is_file() else None


# ----------------------------------------------------------------------------- report


def _c2st(rep: dict[str, Any] | None, key: str) -> str:
    if rep is None or key not in rep:
        return "–"
    c = rep[key]["c2st"]
    return f"{c['headline']:.3f}"


def dataset_row(name: str, folder: Path) -> dict[str, Any]:
    """One dataset's summary numbers (``None`` where a stage has not run)."""
    scores = _read(folder / "scores.json") or {}
    front = _read(folder / "front" / "front.json")
    fr, tm = scores.get("freq"), scores.get("time")
    row: dict[str, Any] = {"dataset": name}
    if fr is not None:
        row.update(num_heldout=fr["num_heldout"], c2st_freq=fr["generated"]["c2st"]["headline"],
                   c2st_floor=fr["floor_train"]["c2st"]["headline"], c2st_gaussian=fr["gaussian"]["c2st"]["headline"],
                   rough_heldout=fr["shape_heldout"]["roughness"], rough_freq=fr["generated"]["shape"]["roughness"])
    if tm is not None:
        row.update(c2st_time=tm["generated"]["c2st"]["headline"], rough_time=tm["generated"]["shape"]["roughness"])
    if fr is not None and fr.get("per_series_znorm"):
        row.update(per_series_znorm=True, c2st_freq_raw=(scores.get("freq_raw") or {}).get("c2st", {}).get("headline"),
                   c2st_time_raw=(scores.get("time_raw") or {}).get("c2st", {}).get("headline"))
    field = scores.get("field")
    if field is not None:
        row.update(disc_freq=field["freq"]["discriminative"], pred_freq=field["freq"]["predictive"],
                   pred_train=field["train"]["predictive"], field_settings=field["settings"])
    if front is not None:
        rows = {r["sampler"]: r for r in front["rows"]}
        e2 = [r for r in front["rows"] if r["sampler"].startswith("e2crf")]
        row["front"] = {"floor": front["floor"]["c2st"]["headline"],
                        "rows": {k: {"c2st": r["c2st"]["headline"], "speedup": r["speedup_vs_em1000"],
                                     "f": r["recomputed_fraction"]} for k, r in rows.items()}}
        if e2:
            row.update(e2crf_spec=e2[0]["sampler"], e2crf_c2st=e2[0]["c2st"]["headline"],
                       e2crf_speedup=e2[0]["speedup_vs_em1000"], e2crf_below=e2[0].get("below_front"),
                       e2crf_below_significant=e2[0].get("below_front_significant"),
                       e2crf_equal=e2[0].get("speedup_at_equal_quality"), em_floor=front["floor"]["c2st"]["headline"])
    for d in ("freq", "time"):
        done = _read(folder / d / "suite_done.json")
        if done is not None:
            row[f"train_{d}"] = {"epochs": done.get("epochs_run"), "seconds": done.get("wall_seconds")}
    return row


def report_stage(name: str, folder: Path) -> None:
    """``<dataset>/table.md``: the model table and the front table."""
    row = dataset_row(name, folder)
    lines = [f"# {name}", "", _model_table([row]), ""]
    front = _read(folder / "front" / "front.json")
    if front is not None:
        from pyfdc.evaluation.front import front_table

        lines += [f"Front of the frequency model ({front['num_samples']} vs {front['num_samples']} series, "
                  f"batch {front['batch_size']}, {front['threads']} thread(s)):", "", front_table(front), ""]
    atomic_write_text(folder / "table.md", "\n".join(lines))


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "–" if v is None else format(v, spec)


def _model_table(rows: list[dict[str, Any]]) -> str:
    head = ("| dataset | held-out | C2ST freq | C2ST time | data floor | Gaussian | roughness held-out / freq / time "
            "| discriminative (freq) | predictive freq / real |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        disc = r.get("disc_freq")
        pred, pt = r.get("pred_freq"), r.get("pred_train")
        out.append(
            f"| {r['dataset']} | {r.get('num_heldout', '–')} | {_fmt(r.get('c2st_freq'))} | {_fmt(r.get('c2st_time'))} | "
            f"{_fmt(r.get('c2st_floor'))} | {_fmt(r.get('c2st_gaussian'))} | {_fmt(r.get('rough_heldout'), '.4f')} / "
            f"{_fmt(r.get('rough_freq'), '.4f')} / {_fmt(r.get('rough_time'), '.4f')} | "
            + (f"{disc['mean']:.3f} ± {disc['std']:.3f}" if disc else "–") + " | "
            + (f"{pred['mean']:.3f} ± {pred['std']:.3f} / {pt['mean']:.3f}" if pred and pt else "–") + " |")
    return "\n".join(out)


def _front_summary(rows: list[dict[str, Any]]) -> str:
    head = ("| dataset | EM-1000 floor | E2-CRF default (C2ST, speedup vs EM-1000) | EM-250 | EM-100 | "
            "DPM++(2M)-50 | DPM++(2M)-25 | below the front? speedup over the fastest uncached run as good |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "front" not in r:
            continue
        fr = r["front"]["rows"]

        def cell(k: str) -> str:
            return f"{fr[k]['c2st']:.3f} ({fr[k]['speedup']:.1f}×)" if k in fr else "–"

        below = {True: "yes", False: "no", None: "faster than all"}.get(r.get("e2crf_below"), "–")
        if r.get("e2crf_below") and not r.get("e2crf_below_significant"):
            below = "tie (within 1.96 s.e.)"
        eq = r.get("e2crf_equal")
        if eq is None:  # better than every uncached row, the EM-1000 floor included: a tie with the floor at best
            below += "; at the EM-1000 floor"
        else:
            below += f"; {eq:.2f}× at equal C2ST"
        out.append(f"| {r['dataset']} | {r['em_floor']:.3f} | {r['e2crf_c2st']:.3f} ({r['e2crf_speedup']:.1f}×, "
                   f"f {fr[r['e2crf_spec']]['f']:.2f}) | {cell('em:250')} | {cell('em:100')} | {cell('dpm2m:50')} | "
                   f"{cell('dpm2m:25')} | {below} |")
    return "\n".join(out)


def write_summary(out: Path, names: list[str], extra: Sequence[str] = ()) -> None:
    """``summary.md`` / ``summary.json``: one model table and one front table over every dataset run, then
    the ``extra`` lines (other stages' sections)."""
    rows = [dataset_row(n, out / n) for n in names if (out / n).is_dir()]
    _json(out / "summary.json", rows)
    normed = [r["dataset"] for r in rows if r.get("per_series_znorm")]
    text = ["# pyfdc development suite", "",
            "Models vs held-out data (C2ST headline = the larger of trees / linear, mean over held-out subsamples):",
            "", _model_table(rows), ""]
    if normed:
        text += [f"{', '.join(normed)}: the archive z-normalises every series; generated series get the same "
                 "normalisation before scoring (raw C2ST, freq / time: "
                 + "; ".join(f"{r['dataset']} {_fmt(r.get('c2st_freq_raw'))} / {_fmt(r.get('c2st_time_raw'))}"
                             for r in rows if r.get("per_series_znorm")) + ").", ""]
    text += [
            "Samplers of the frequency model vs its uncached EM-1000 (E2-CRF default: what `pyfdc sample --sampler "
            "e2crf` runs on that model, its own calibration for 1,000 steps; f = recomputed fraction):", "",
            _front_summary(rows), ""]
    text += list(extra)
    atomic_write_text(out / "summary.md", "\n".join(text))

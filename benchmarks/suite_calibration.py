"""Suite stage ``calibrate``: does the calibration's shadow test predict the C2ST, on every suite model?

Per dataset, for the frequency model at 1,000 EM steps:

1. ``pyfdc.e2crf_calibrate.calibrate`` measures **every** candidate on its shadow batch (32 series
   from the calibration seed: paired deviation from the uncached twin, per-band power error, shadow
   speedup) and records which pass; kept as the model's own calibration (``freq/calibrations/em-1000.json``,
   what ``pyfdc sample --sampler e2crf`` then runs) and reused for these weights.
2. Every candidate joins the model's front (``pyfdc.evaluation.front.run_front`` in ``front/``, same reference
   EM-1000 seed 0, floor seed 2 and sample count as the front stage; saved runs are reused), so each
   candidate's pass/fail sits beside its C2ST against EM-1000 and its speedup.

A candidate *keeps* the distribution when its C2ST is within 1.96 standard errors (binomial, both
sets) of the floor's. The shadow test is *safe* when no passing candidate changes it, and *exact* when
the cheapest passing one is also the cheapest that keeps it (a safe miss costs speed, not quality).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

CALIBRATION_STEPS = 1000


def _path(folder: Path) -> Path:  # the model's kept calibration: what its E2-CRF default samples with
    from pyfdc.e2crf.calibrate import calibration_file

    return calibration_file(folder / "freq", CALIBRATION_STEPS)


def _specs_path(folder: Path) -> Path:  # each candidate's front spec, in the calibration's row order
    return folder / "calibration" / f"em-{CALIBRATION_STEPS}.specs.json"


def calibrate_stage(name: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Calibrate ``folder/freq`` with every candidate measured, then put every candidate on its front."""
    from pyfdc.e2crf.calibrate import Calibration, calibrate, candidate_configs
    from pyfdc.evaluation.front import run_front
    from pyfdc.core.model import weights_fingerprint
    from suite_stages import FRONT_SEED, FRONT_SPECS, REF_SEED, _json, _model, config_spec, default_e2crf_spec

    model = _model(folder / "freq")
    path = _path(folder)
    cal = Calibration.load(path) if path.is_file() else None
    if (cal is None or cal.model_id != weights_fingerprint(model) or len(cal.rows) < 2
            or any("shift" not in r for r in cal.rows)):  # made before the statistic-shift gate
        cal = calibrate(model, CALIBRATION_STEPS, all_candidates=True, progress=True)
        path.parent.mkdir(exist_ok=True)
        cal.save(path)  # same choice as a first-use calibration (the cheapest pass), with every row measured
    _specs_path(folder).parent.mkdir(exist_ok=True)
    _, configs = candidate_configs(model, [r["candidate"] for r in cal.rows])
    cand_specs = [config_spec(c, CALIBRATION_STEPS) for c in configs]
    _json(_specs_path(folder), cand_specs)
    specs = [*FRONT_SPECS, default_e2crf_spec(model, CALIBRATION_STEPS)]
    specs += [s for s in cand_specs if s not in specs]
    run_front(model, folder / "front", specs, num_samples=args.num_samples, batch_size=args.batch_size,
              seed=FRONT_SEED, ref_seed=REF_SEED)
    return calibration_rows(folder)


def _keeps(row: dict[str, Any], floor: dict[str, Any]) -> bool:
    from pyfdc.evaluation.front import c2st_margin

    return row["c2st"]["headline"] <= floor["c2st"]["headline"] + c2st_margin(row, floor)


def _front_shift(folder: Path, spec: str) -> float | None:
    """The shadow test's statistic on the front's own sets: the candidate against the floor run (uncached
    EM-1000 with the same seed, so the same noise), every front series instead of 32."""
    import numpy as np

    from pyfdc.evaluation.front import parse_spec
    from pyfdc.e2crf.shadow import statistic_shift

    sub = folder / "front" / "samples" / "seed2"
    cand, unc = sub / f"{parse_spec(spec).slug}.npy", sub / "em_1000.npy"
    if not (cand.is_file() and unc.is_file()):
        return None
    return max(statistic_shift(np.load(cand), np.load(unc)).values())


def calibration_rows(folder: Path) -> dict[str, Any]:
    """Per candidate: the shadow test's numbers and verdict beside the front's C2ST and speedup."""
    from pyfdc.e2crf.calibrate import Calibration
    from suite_stages import _read

    path, front, specs = _path(folder), _read(folder / "front" / "front.json"), _read(_specs_path(folder))
    if not path.is_file() or front is None or specs is None:
        return {}
    cal = Calibration.load(path)
    by_spec = {r["sampler"]: r for r in front["rows"]}
    floor = front["floor"]
    out = []
    for row, spec in zip(cal.rows, specs):
        fr = by_spec.get(spec)
        front_shift = _front_shift(folder, spec)
        out.append({
            "budget": row["candidate"].get("budget"), "shadow_shift": row.get("shift"),
            "shadow_deviation": row["deviation_median"],
            "shadow_band_error": row["worst_band_error"], "shadow_speedup": row["speedup"], "passed": row["passed"],
            "c2st": None if fr is None else fr["c2st"]["headline"],
            "speedup": None if fr is None else fr["speedup_vs_em1000"],
            "f": None if fr is None else fr["recomputed_fraction"],
            "keeps": None if fr is None else _keeps(fr, floor), "front_shift": front_shift})
    measured = [r for r in out if r["keeps"] is not None]
    chosen = next((r for r in out if r["passed"]), None)
    cheapest_kept = next((r for r in measured if r["keeps"]), None)
    safe = bool(measured) and all(r["keeps"] for r in measured if r["passed"])
    exact = safe and (chosen or {}).get("budget") == (cheapest_kept or {}).get("budget")
    return {"floor": floor["c2st"]["headline"], "candidates": out, "chosen": None if chosen is None else chosen["budget"],
            "cheapest_kept": None if cheapest_kept is None else cheapest_kept["budget"], "safe": safe, "exact": exact,
            "num_shadow": cal.num_shadow, "targets": cal.targets}


def calibration_table(rows: dict[str, dict[str, Any]]) -> str:
    """Markdown: one line per dataset, each candidate as ``pass/fail · C2ST (speedup)``."""
    budgets = sorted({c["budget"] for r in rows.values() for c in r.get("candidates", [])})
    head = ("| dataset | EM-1000 floor | " + " | ".join(f"f {b:g}: shift, shadow (front) → C2ST (speedup)" for b in budgets)
            + " | calibration picks | cheapest that keeps EM-1000 | safe? (no pass changes it) | the cheapest? |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in rows.items():
        if not r.get("candidates"):
            continue
        by_b = {c["budget"]: c for c in r["candidates"]}

        def cell(b: float) -> str:
            c = by_b.get(b)
            if c is None:
                return "–"
            verdict = "pass" if c["passed"] else "fail"
            c2st = "–" if c["c2st"] is None else (f"**{c['c2st']:.3f}**" if c["keeps"] else f"{c['c2st']:.3f}")
            speed = "" if c["speedup"] is None else f" ({c['speedup']:.1f}×)"
            shift = "–" if c["shadow_shift"] is None else f"{c['shadow_shift']:.2f}"
            on_front = "" if c.get("front_shift") is None else f" ({c['front_shift']:.2f})"
            return f"{verdict} {shift}{on_front} → {c2st}{speed}"

        pick = "uncached" if r["chosen"] is None else f"f {r['chosen']:g}"
        kept = "none" if r["cheapest_kept"] is None else f"f {r['cheapest_kept']:g}"
        out.append(f"| {name} | {r['floor']:.3f} | " + " | ".join(cell(b) for b in budgets)
                   + f" | {pick} | {kept} | {'yes' if r['safe'] else '**no**'} | {'yes' if r['exact'] else 'no'} |")
    return "\n".join(out)


def calibration_section(out: Path, names: list[str]) -> list[str]:
    """The summary's lines for this stage (none before it has run anywhere)."""
    cal = {n: calibration_rows(out / n) for n in names if (out / n).is_dir()}
    if not any(cal.values()):
        return []
    return ["The calibration's shadow test (pass/fail and the largest standardised statistic shift on its 32 "
            "shadow series; in brackets the same statistic on the front's sets, candidate vs the same-noise "
            "EM-1000 floor run) beside each candidate's C2ST vs EM-1000 on the front (bold: within 1.96 s.e. of the "
            "floor) and speedup:", "", calibration_table(cal), ""]

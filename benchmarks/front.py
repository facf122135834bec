"""The speed–quality front and its variants, one tool (every sampler timed and scored against uncached EM-1000).

    python benchmarks/front.py run --out benchmarks/results/front_small --threads 2 [--specs em:250 dpm2m:25 ...]
    python benchmarks/front.py repeat --front runs/front --seed 3 --checkpoint ecg_small_time SPEC [SPEC ...]
    python benchmarks/front.py time --checkpoint ecg_small_time --rounds 2 em:250 "e2crf(budget=0.5):250"
    python benchmarks/front.py batch1 --specs em:1000 em:100 dpm2m:25 "e2crf(budget=0.5):250"

* ``run``: :func:`pyfdc.evaluation.front.run_front` (= ``pyfdc benchmark --front``; every option of that
  command); reruns into the same ``--out`` reuse the saved sets of the same model (resumable).
* ``repeat``: another noise seed for each candidate against the *same* saved reference set (and, with
  ``--floor``, a floor last), scored with the front's scorer; sets under ``<front>/samples/seed<seed>``,
  the table in ``<front>/repeat_seed<seed>.{md,json}``.
* ``time``: wall time side by side in one process: warm-up, interleaved rounds (order rotated each round),
  median seconds per batch and the ratio to the first spec.
* ``batch1``: seconds per series drawn one at a time (samplers are batch invariant, so a front's C2ST
  carries over; only the time changes), rounds interleaved with the order rotated, medians; results
  ``benchmarks/results/batch1_<tag>.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pyfdc._io import atomic_write_text
from pyfdc.cli.args import checkpoint_dir
from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.evaluation import front as F


def _warm(model: Any, specs: list[F.SamplerSpec], n: int, seed: int = 0) -> None:
    """A short draw of each spec; an E2-CRF spec that leaves its budget to the model's calibration is calibrated
    here at its own step count (kept with the model), so no timed round pays for a calibration."""
    from pyfdc.e2crf.calibrate import calibration_for

    for sp in specs:
        if sp.kind == "e2crf" and sp.e2crf_config().budget is None:
            calibration_for(model, sp.steps, sp.method, base=sp.e2crf_config(), progress=False)
        F._draw(model, F.SamplerSpec(sp.kind, 3, sp.options), n, seed, 0)


def repeat(args: argparse.Namespace) -> None:
    from pyfdc.e2crf.shadow import band_spectral_error
    from pyfdc.evaluation.quality import c2st_report

    model = load_checkpoint(checkpoint_dir(args.checkpoint))
    mid, em1000 = F.model_fingerprint(model), F.SamplerSpec("em", 1000)
    ref = F._load_run(args.front / "samples" / "reference", em1000, args.num_samples, args.batch_size, mid)
    if ref is None:
        raise SystemExit(f"no EM-1000 reference of this model with {args.num_samples} series in {args.front}")
    specs = [F.parse_spec(s) for s in args.specs] + ([em1000] if args.floor else [])
    sub = args.front / "samples" / f"seed{args.seed}"
    sub.mkdir(parents=True, exist_ok=True)
    _warm(model, specs, 8, args.seed)
    rows = []
    for sp in specs:
        run = F._load_run(sub, sp, args.num_samples, args.batch_size, mid, args.seed)
        if run is None:
            run = F.run_sampler(model, sp, args.num_samples, args.batch_size, args.seed)
            F._save_run(sub, run, mid, args.seed)
        rows.append({"sampler": sp.name, "c2st": c2st_report(run.x, ref.x, seed=args.seed),
                     "band_error": band_spectral_error(run.x, ref.x), "f": run.recomputed_fraction})
    lines = ["| sampler | f | C2ST (headline) | hgb | linear | band error |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['sampler']} | {r['f']:.2f} | {r['c2st']['headline']:.3f} | {r['c2st']['hgb']['accuracy']:.3f} | "
              f"{r['c2st']['linear']['accuracy']:.3f} | " + " / ".join(f"{100 * v:+.0f}%" for v in r["band_error"].values())
              + " |" for r in rows]
    atomic_write_text(args.front / f"repeat_seed{args.seed}.md", "\n".join(lines) + "\n")
    atomic_write_text(args.front / f"repeat_seed{args.seed}.json", json.dumps(rows, indent=1, default=float))
    print("\n".join(lines))


def time_side_by_side(args: argparse.Namespace) -> None:
    model = load_checkpoint(checkpoint_dir(args.checkpoint))
    specs = [F.parse_spec(s) for s in args.specs]
    _warm(model, specs, args.batch_size)
    secs: dict[str, list[float]] = {sp.name: [] for sp in specs}
    with torch.inference_mode():
        for r in range(args.rounds):
            for sp in specs[r % len(specs):] + specs[:r % len(specs)]:
                t0 = time.perf_counter()
                F._draw(model, sp, args.batch_size, r, 0)
                secs[sp.name].append(time.perf_counter() - t0)
                print(f"round {r} {sp.name}: {secs[sp.name][-1]:.2f} s", flush=True)
    base = statistics.median(secs[specs[0].name])
    print(f"\n| sampler | s / batch of {args.batch_size} (median of {args.rounds}) | all rounds | time / {specs[0].name} |")
    print("|---|---|---|---|")
    for name, v in secs.items():
        print(f"| {name} | {statistics.median(v):.2f} | {', '.join(f'{x:.1f}' for x in v)} | {statistics.median(v) / base:.2f} |")


def _uncached_twin(sp: F.SamplerSpec, specs: list[F.SamplerSpec]) -> F.SamplerSpec | None:
    """The uncached EM spec among ``specs`` with ``sp``'s steps and compile setting."""
    compiled = dict(sp.options).get("compile", 0)
    return next((o for o in specs if o.kind == "em" and o.steps == sp.steps
                 and dict(o.options).get("compile", 0) == compiled), None)


def batch1(args: argparse.Namespace) -> None:
    from pyfdc.pretrained import pretrained_path

    model = load_checkpoint(checkpoint_dir(args.checkpoint) if args.checkpoint else pretrained_path())
    specs = [F.parse_spec(s) for s in args.specs]
    secs: dict[str, list[float]] = {sp.name: [] for sp in specs}
    with torch.inference_mode():
        for sp in specs:
            F._draw(model, sp, 1, 0, 10_000)                        # warm-up (and compilation)
        for j in range(args.repeats):                               # interleaved, order rotated each round
            for sp in specs[j % len(specs):] + specs[:j % len(specs)]:
                t0 = time.perf_counter()
                F._draw(model, sp, 1, 0, j)
                secs[sp.name].append(time.perf_counter() - t0)
    rows = [{"sampler": sp.name, "seconds_per_series": statistics.median(secs[sp.name]),
             "seconds": secs[sp.name]} for sp in specs]
    base = next((r["seconds_per_series"] for r in rows if r["sampler"] == "em:1000"), None)
    lines = [f"Batch-1 seconds per series, {args.threads} thread(s), median of {args.repeats} interleaved rounds; "
             "paired: the median over rounds of uncached EM's time (same steps, same compile) over this one's", "",
             "| sampler | s / series | speedup vs EM-1000 | paired speedup vs EM, same steps and compile |",
             "|---|---|---|---|"]
    for sp, r in zip(specs, rows):
        speedup = f"{base / r['seconds_per_series']:.2f}×" if base else "–"
        twin = _uncached_twin(sp, specs)
        paired = "–"
        if twin is not None and twin != sp:
            r["paired_speedup"] = statistics.median(a / b for a, b in zip(secs[twin.name], secs[sp.name]))
            paired = f"{r['paired_speedup']:.2f}× (vs {twin.name})"
        lines.append(f"| {r['sampler']} | {r['seconds_per_series']:.3f} | {speedup} | {paired} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for r in rows:
        print(json.dumps(r), flush=True)
    atomic_write_text(out / f"batch1_{args.tag}.json", json.dumps(rows, indent=1))
    atomic_write_text(out / f"batch1_{args.tag}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="tool", required=True)
    sub.add_parser("run", help="the front (pyfdc benchmark --front; its options follow)", add_help=False)
    r = sub.add_parser("repeat", help="another seed against the saved reference")
    r.add_argument("--front", required=True, type=Path, help="a front folder with samples/reference")
    r.add_argument("--checkpoint", required=True)
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--num-samples", type=int, default=512)
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--floor", action="store_true", help="also draw an EM-1000 set with this seed (last)")
    t = sub.add_parser("time", help="wall time side by side")
    t.add_argument("--checkpoint", required=True)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--rounds", type=int, default=3)
    b = sub.add_parser("batch1", help="seconds per series, one at a time")
    b.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped model)")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--tag", default="ecg_small")
    b.add_argument("--out", default=str(Path(__file__).with_name("results")))
    for p in (r, t, b):
        p.add_argument("--threads", type=int, default=1)
    for p in (r, t):
        p.add_argument("specs", nargs="+")
    b.add_argument("--specs", nargs="+", required=True)
    return ap


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"]:
        from pyfdc.cli import main as cli_main

        return cli_main(["benchmark", "--front", *argv[1:]])
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    {"repeat": repeat, "time": time_side_by_side, "batch1": batch1}[args.tool](args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

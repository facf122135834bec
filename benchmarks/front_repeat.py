"""Another repeat of a front's candidates against the *same* reference set: new noise seed for every
candidate (and, last, a floor), C2ST against the saved reference with the front's own scorer.

    python benchmarks/front_repeat.py --front runs/ftime256 --seed 3 --checkpoint ecg_small_time \
        --num-samples 256 SPEC [SPEC ...]

Sets are saved under ``<front>/samples/seed<seed>`` as the front saves them (a rerun reuses them), and the
table goes to ``<front>/repeat_seed<seed>.md``; timings are the sets' own (see the front's caveats).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pyfdc.evaluation import front as F
from pyfdc._io import atomic_write_text
from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.cli.args import checkpoint_dir
from pyfdc.e2crf.shadow import band_spectral_error
from pyfdc.evaluation.quality import c2st_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--front", required=True, type=Path, help="a front folder with samples/reference")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--num-samples", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--floor", action="store_true", help="also draw an EM-1000 set with this seed (last)")
    ap.add_argument("specs", nargs="+")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_checkpoint(checkpoint_dir(args.checkpoint))
    mid = F.model_fingerprint(model)
    em1000 = F.SamplerSpec("em", 1000)
    ref = F._load_run(args.front / "samples" / "reference", em1000, args.num_samples, args.batch_size, mid)
    if ref is None:
        raise SystemExit(f"no EM-1000 reference of this model with {args.num_samples} series in {args.front}")
    specs = [F.parse_spec(s) for s in args.specs] + ([em1000] if args.floor else [])
    sub = args.front / "samples" / f"seed{args.seed}"
    sub.mkdir(parents=True, exist_ok=True)
    for sp in specs:
        F._draw(model, F.SamplerSpec(sp.kind, 3, sp.options), 8, args.seed, 0)  # warm-up
    rows = []
    for sp in specs:
        run = F._load_run(sub, sp, args.num_samples, args.batch_size, mid, args.seed)
        if run is None:
            run = F.run_sampler(model, sp, args.num_samples, args.batch_size, args.seed)
            F._save_run(sub, run, mid, args.seed)
        c = c2st_report(run.x, ref.x, seed=args.seed)
        be = band_spectral_error(run.x, ref.x)
        rows.append({"sampler": sp.name, "c2st": c, "band_error": be, "f": run.recomputed_fraction})
        print(f"| {sp.name} | {run.recomputed_fraction:.2f} | {c['headline']:.3f} | {c['hgb']['accuracy']:.3f} | "
              f"{c['linear']['accuracy']:.3f} | " + " / ".join(f"{100 * v:+.0f}%" for v in be.values()) + " |", flush=True)
    head = "| sampler | f | C2ST (headline) | hgb | linear | band error |\n|---|---|---|---|---|---|\n"
    lines = [f"| {r['sampler']} | {r['f']:.2f} | {r['c2st']['headline']:.3f} | {r['c2st']['hgb']['accuracy']:.3f} | "
             f"{r['c2st']['linear']['accuracy']:.3f} | " + " / ".join(f"{100 * v:+.0f}%" for v in r["band_error"].values())
             + " |" for r in rows]
    atomic_write_text(args.front / f"repeat_seed{args.seed}.md", head + "\n".join(lines) + "\n")
    atomic_write_text(args.front / f"repeat_seed{args.seed}.json", json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()

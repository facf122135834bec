"""Does ``--sampler auto``'s choice keep EM-1000's distribution on draws it was not chosen on? (issue 23)

Per suite dataset: the auto choice for its frequency model (``pyfdc.evaluation.auto.model_auto_choice``: an
EM-1000 shadow set of 128 series with its own seed, candidates cheapest first, each passing the C2ST gate
twice; kept in the model's checkpoint folder), then the chosen sampler drawn again with a fresh seed and
scored against the suite front's own EM-1000 reference (seed 0, not used by the choice), beside the
front's floor (EM-1000 with another seed against the same reference).

    python benchmarks/studies/auto_choice.py --suite runs/suite --seed 3
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="runs/suite", type=Path)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--datasets", nargs="*")
    ap.add_argument("--out", type=Path, help="JSON lines, one per dataset (appended)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.evaluation.auto import model_auto_choice
    from pyfdc.evaluation.front import run_sampler
    from pyfdc.evaluation.quality import c2st_report

    print("| dataset | chosen | speedup vs EM-1000 (shadow) | C2ST first / confirm (gate) | C2ST, fresh seed vs front reference | front floor | choice took |")
    print("|---|---|---|---|---|---|---|")
    for folder in sorted(p for p in args.suite.iterdir() if (p / "front" / "front.json").is_file()):
        if args.datasets and folder.name not in args.datasets:
            continue
        front = json.loads((folder / "front" / "front.json").read_text())
        n = front["num_samples"]
        model = load_checkpoint(folder / "freq")
        choice = model_auto_choice(model, num_shadow=n, progress=False, say=lambda line: print(f"  {folder.name}: {line}", flush=True))
        ref = np.load(folder / "front" / "samples" / "reference" / "em_1000.npy")
        with torch.inference_mode():
            run = run_sampler(model, choice.sampler_spec, n, front["batch_size"], args.seed)
        fresh = float(c2st_report(run.x, ref, seed=args.seed)["headline"])
        floor = front["rows"][0]["c2st"]["headline"]
        t = next((t for t in choice.trials if t["verdict"] == "chosen"), None)
        speed = 1.0 if t is None else choice.reference_seconds / t["seconds"]
        passed = "–" if t is None else f"{t['c2st']:.3f} / {t['c2st_confirm']:.3f} ({choice.gate:.3f})"
        print(f"| {folder.name} | {choice.spec} | {speed:.1f}× | {passed} | {fresh:.3f} | {floor:.3f} | "
              f"{choice.seconds:.0f} s |", flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps({"dataset": folder.name, "choice": choice.to_dict(), "fresh_c2st": fresh,
                                     "floor": floor, "seed": args.seed}) + "\n")


if __name__ == "__main__":
    main()

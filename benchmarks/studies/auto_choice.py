"""Does ``--sampler auto``'s choice keep EM-1000's distribution on draws it was not chosen on? (issue 23)

Per suite dataset: the auto choice for its frequency model (``pyfdc.evaluation.auto.model_auto_choice``: an
EM-1000 shadow set of 128 series with its own seed, candidates cheapest first, each passing the C2ST gate
twice; kept in the model's checkpoint folder), then the chosen sampler drawn again with a fresh seed and
scored against an EM-1000 set the choice never saw (the suite front's reference, seed 0, or the seed-0 set
of ``recipe_on_validation.py``), beside the floor (EM-1000 with another seed against the same set: the
front's, or the choice's own shadow set).

    python benchmarks/studies/auto_choice.py --suite runs/suite --seed 3
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="runs/suite", type=Path)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--datasets", nargs="*")
    ap.add_argument("--num-samples", type=int, default=128, help="series per set where no front fixes it")
    ap.add_argument("--out", type=Path, help="JSON lines, one per dataset (appended)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.evaluation.auto import model_auto_choice
    from pyfdc.evaluation.front import run_sampler
    from pyfdc.evaluation.quality import c2st_report

    print("| dataset | chosen | speedup vs EM-1000 (shadow) | C2ST first / confirm (gate) | C2ST, fresh seed vs "
          "independent EM-1000 | floor | choice took |")
    print("|---|---|---|---|---|---|---|")
    for folder in sorted(p for p in args.suite.iterdir() if (p / "freq" / "config.json").is_file()):
        if args.datasets and folder.name not in args.datasets:
            continue
        model = load_checkpoint(folder / "freq")
        ref, floor = _reference(model, folder, args.num_samples)
        n = len(ref)
        choice = model_auto_choice(model, num_shadow=n, progress=False,
                                   say=lambda line: print(f"  {folder.name}: {line}", flush=True))
        with torch.inference_mode():
            run = run_sampler(model, choice.sampler_spec, n, 64, args.seed)
        fresh = float(c2st_report(run.x, ref, seed=args.seed)["headline"])
        if floor is None and choice.shadow is not None:   # the shadow set is EM-1000 with its own seed
            floor = float(c2st_report(choice.shadow, ref, seed=args.seed)["headline"])
        t = next((t for t in choice.trials if t["verdict"] == "chosen"), None)
        speed = 1.0 if t is None else choice.reference_seconds / t["seconds"]
        passed = "–" if t is None else f"{t['c2st']:.3f} / {t['c2st_confirm']:.3f} ({choice.gate:.3f})"
        floor_s = "–" if floor is None else f"{floor:.3f}"
        print(f"| {folder.name} | {choice.spec} | {speed:.1f}× | {passed} | {fresh:.3f} | {floor_s} | "
              f"{choice.seconds:.0f} s |", flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps({"dataset": folder.name, "choice": choice.to_dict(), "fresh_c2st": fresh,
                                     "floor": floor, "seed": args.seed}) + "\n")


def _reference(model: Any, folder: Path, n: int) -> tuple[np.ndarray, float | None]:
    """An EM-1000 set independent of the choice: the suite front's reference (with its floor), else the
    seed-0 set ``recipe_on_validation.py`` draws (drawn here when missing; floor from the choice's shadow)."""
    front = folder / "front" / "front.json"
    if front.is_file():
        f = json.loads(front.read_text())
        return np.load(folder / "front" / "samples" / "reference" / "em_1000.npy"), f["rows"][0]["c2st"]["headline"]
    path = folder / "em1000_seed0.npy"
    if path.is_file() and len(np.load(path)) >= n:
        return np.load(path)[:n], None
    from pyfdc.sampling.sampler import Sampler

    x = Sampler(model, "em").sample(n, steps=1000, batch_size=64, seed=0, progress=False).numpy()
    np.save(path, x)
    return x, None


if __name__ == "__main__":
    main()

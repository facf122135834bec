"""Issue 24: samples with and without the training data's exact structure (band limit, value grid).

    python benchmarks/studies/exact_structure.py --run runs/fvb --datasets japanesevowels [--num-samples 128]

Per dataset of a suite run (``RUN/D/freq``, or ``RUN/D/time`` with ``--domain time``; the recipe's
last-epoch EMA weights from ``train_state.pt``):
:class:`pyfdc.core.exact_structure.ExactStructure` fitted on the train split's fit series (what
``pyfdc train`` now records), one set of uncached EM-1000 tokens (seed 0), decoded without and with it.
Scored on the train split only for the decision — C2ST against the fit series (mean of 3 subsamples),
roughness against the validation series, the strongest single statistic — and, with ``--held-out``, the
held-out C2ST (5 subsamples, as ``suite.py --stages score``) printed after. Datasets where the fit split
shows no exact structure are reported as such (their samples do not change).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from c2st_features import feature_aucs  # noqa: E402
from final_vs_best import _c2st, held_out_cell, print_header, study_parser, train_splits  # noqa: E402
from suite_data import znorm_like  # noqa: E402


def _tokens(folder: Path, n: int, domain: str) -> tuple[object, torch.Tensor]:
    """The run's ``domain`` model (last-epoch EMA) and ``n`` EM-1000 token sets (seed 0), cached beside the run."""
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.sampling.sampler import Sampler

    model = load_checkpoint(folder / domain)
    state = torch.load(folder / domain / "train_state.pt", weights_only=False, map_location="cpu")
    model.net.load_state_dict(state["ema"])
    out = folder / ("em1000_final_tokens.pt" if domain == "freq" else f"{domain}_em1000_final_tokens.pt")
    if out.is_file():
        z = torch.load(out)
        if len(z) >= n:
            return model, z[:n]
    z = Sampler(model, "em").sample_tokens(n, steps=1000, batch_size=64, seed=0, progress=False)
    torch.save(z, out)
    return model, z


def main() -> None:
    ap = study_parser(__doc__)
    ap.add_argument("--domain", choices=("freq", "time"), default="freq", help="which of the run's models")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pyfdc.core.exact_structure import ExactStructure

    print_header(["dataset", "structure found (fit split)", "decoded", "C2ST vs fit hgb / linear (3 subsamples)",
                  "roughness gen / val", "strongest statistic (AUC)"], args.held_out)
    for name in args.datasets:
        ds, fit, val = train_splits(name)
        exact = ExactStructure.fit(fit)
        if exact is None:
            print(f"| {name} | none | (unchanged) | | | |" + (" |" if args.held_out else ""), flush=True)
            continue
        found = ", ".join(filter(None, [
            None if exact.band_limit is None else f"band limit (tau {exact.band_limit.tau:.3g})",
            None if exact.grid is None else f"grid decimals {sorted(set(map(str, exact.grid.decimals)))}"]))
        model, z = _tokens(args.run / name, args.num_samples, args.domain)
        for label, ex in (("without", None), ("with", exact)):
            model.exact = ex
            x = znorm_like(ds, model.decode_samples(z).numpy())
            hgb, lin = _c2st(x, fit, 3)
            rough = float(np.abs(np.diff(x, axis=1)).mean()), float(np.abs(np.diff(val, axis=1)).mean())
            auc, stat, _, _ = feature_aucs(x, fit)[0]
            row = (f"| {name} | {found} | {label} | {hgb:.3f} / {lin:.3f} | {rough[0]:.4f} / {rough[1]:.4f} "
                   f"| {stat} ({auc:.3f}) |")
            print(row + held_out_cell(x, ds.test, args.held_out), flush=True)


if __name__ == "__main__":
    main()

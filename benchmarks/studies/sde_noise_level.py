"""Issue 24: the reverse process between the SDE and the probability-flow ODE — where do the mode weights land?

    python benchmarks/studies/sde_noise_level.py --run runs/fvb --datasets basicmotions --lambdas 0 0.5 1

With an exact score every member of the family ``dz = [f(z) - (1 + λ²)/2 g² ∇log p] dt + λ g dW̄`` has the
data's marginals (λ = 1: the reverse SDE that EM integrates; λ = 0: the probability-flow ODE). On BasicMotions
EM draws too few energetic series and DPM-Solver++ too many (``series_energy.py``), so the learned score is
inconsistent; this integrates the family with Euler(-Maruyama) steps on the uniform grid (λ = 1 is exactly
``pyfdc``'s EM), the last epoch's EMA weights, the support clip on, seed 0, and scores each λ on the train
split (share of series with sd > ``--loud``, per-series sd quantiles, C2ST vs fit, mean of 3 subsamples);
``--held-out`` prints the held-out C2ST after. A study, not a sampler: nothing in ``pyfdc`` uses it.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from final_vs_best import c2st_cells, print_header, study_parser, train_splits  # noqa: E402
from suite_data import znorm_like  # noqa: E402


@torch.no_grad()
def draw(model: object, lam: float, n: int, steps: int, seed: int = 0) -> np.ndarray:
    """``n`` series of the λ-family from ``model`` (Euler steps on EM's grid, same noise stream as EM)."""
    from pyfdc.sampling.solvers import NoiseStream, _grid, network_eps_fn

    tr, sde = model.transform, model.sde
    mask = model.mask()
    eps_fn = model.sampling_eps_fn(network_eps_fn(model.net))
    stream = NoiseStream(seed, torch.arange(n), (tr.num_tokens, tr.token_dim), mask)
    ts = _grid(sde, steps)
    z = stream() * mask
    for i in range(steps):
        t, dt = ts[i], ts[i] - ts[i + 1]
        beta, sigma = sde.beta_float(t), sde.marginal_float(t)[1]
        eps = eps_fn(z, torch.full((n,), t), i)
        z = z * (1.0 + 0.5 * beta * dt) - (0.5 * (1.0 + lam * lam) * beta * dt / sigma) * eps * mask
        if i < steps - 1 and lam > 0:
            z = z + lam * math.sqrt(beta * dt) * stream()
    return model.decode_samples(z).numpy()


def main() -> None:
    ap = study_parser(__doc__)
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--loud", type=float, default=2.0, help="the per-series sd counted as energetic (default 2)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pyfdc.core.checkpoint import load_checkpoint

    print_header(["dataset", "λ", f"share with sd > {args.loud:g} (fit)", "per-series sd q10 / q50 / q90 (fit)",
                  "C2ST vs fit (hgb / linear, 3 subsamples)"], args.held_out)
    for name in args.datasets:
        ds, fit, val = train_splits(name)
        folder = args.run / name / "freq"
        model = load_checkpoint(folder)
        model.net.load_state_dict(torch.load(folder / "train_state.pt", weights_only=False, map_location="cpu")["ema"])
        model.net.eval()
        def energy(a: np.ndarray) -> str:  # "share (q10 / q50 / q90)" of the per-series sd
            sd = a.std(axis=1).mean(axis=1)
            return f"{np.mean(sd > args.loud):.2f}", " / ".join(f"{v:.2f}" for v in np.quantile(sd, (0.1, 0.5, 0.9)))

        (share_fit, q_fit) = energy(fit)
        for lam in args.lambdas:
            x = znorm_like(ds, draw(model, lam, args.num_samples, args.steps))
            share, q = energy(x)
            cells = c2st_cells(x, fit, ds.test, args.held_out)
            print(f"| {name} | {lam:g} | {share} ({share_fit}) | {q} ({q_fit}) |" + cells, flush=True)


if __name__ == "__main__":
    main()

"""The field's post-hoc scores, so pyfdc's numbers can stand beside published tables.

Both follow TimeGAN (Yoon et al., NeurIPS 2019), as Diffusion-TS (ICLR 2024) and TSGBench report them:

* **Discriminative score** — a one-layer GRU classifier (hidden size ``⌊M/2⌋``, at least 1) on the
  last hidden state, trained with Adam for 2,000 iterations of 128 real + 128 synthetic series from
  an 80% split of each set, scored on the other 20%: ``|accuracy − 0.5|`` (0 = indistinguishable).
* **Predictive score** (train on synthetic, test on real) — a one-layer GRU (same hidden size) with
  a sigmoid head is trained on the synthetic set for 5,000 iterations of batch 128, L1 loss, to
  predict the last channel at step ``j + 1`` from the other channels up to step ``j``; the score is
  its mean absolute error on every real series. **Univariate variant** (``M = 1``, not defined by
  TimeGAN): predict the series' next value from its values up to the current step.

Data outside [0, 1] are min-max scaled per channel with the *real* set's range first (TimeGAN scales
its real data to [0, 1]); data already inside [0, 1] are scored as they are — as TimeGAN and
Diffusion-TS score Sines, whose values lie in [0.5, 1]: rescaling them to [0, 1] would double every
MAE (the published 0.093 is the MAE of predicting each step from time alone on the unscaled data,
0.186 after rescaling). The score is the mean ± sd over ``runs`` independent trainings.

These scores are weak: the GRU cannot tell Sines from Sines plus white noise of 3% of the range
(``docs/QUALITY.md``), where the C2ST of :mod:`pyfdc.evaluation.quality` is near 1.0. They go *beside* the
C2ST, which stays the headline, never instead of it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["discriminative_score", "predictive_score", "gru_hidden"]


def gru_hidden(channels: int) -> int:
    """TimeGAN's hidden size ``⌊M/2⌋``, at least 1 (``M = 1`` would otherwise give an empty GRU)."""
    return max(1, channels // 2)


def _pair(real: Any, synthetic: Any, min_len: int) -> tuple[np.ndarray, np.ndarray]:
    from pyfdc._arrays import as_series as _series
    from pyfdc._arrays import check_same_shape as _same_shape

    r, s = _series(real, "real"), _series(synthetic, "synthetic")
    _same_shape(r, s, ("real", "synthetic"))
    if min(len(r), len(s)) < min_len:
        raise ValueError(f"need at least {min_len} series per set, got {len(r)} real and {len(s)} synthetic")
    if r.min() >= 0.0 and r.max() <= 1.0:  # already on the field's [0, 1] scale (Sines, the embedded ECG)
        return r.astype(np.float32), s.astype(np.float32)
    lo, hi = r.min(axis=(0, 1)), r.max(axis=(0, 1))
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return ((r - lo) / span).astype(np.float32), ((s - lo) / span).astype(np.float32)


def _check(iterations: int, batch_size: int, runs: int) -> None:
    for name, v in (("iterations", iterations), ("batch_size", batch_size), ("runs", runs)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")


class _GRUHead(nn.Module):
    """GRU over ``(B, N, C)`` -> linear head: per step ``(B, N, 1)`` or on the last state ``(B, 1)``."""

    def __init__(self, inputs: int, hidden: int, per_step: bool) -> None:
        super().__init__()
        self.gru = nn.GRU(inputs, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        self.per_step = per_step

    def forward(self, x: Tensor) -> Tensor:
        seq, last = self.gru(x)
        return self.head(seq) if self.per_step else self.head(last[-1])


def _batch(x: Tensor, size: int, gen: torch.Generator) -> Tensor:
    return x[torch.randint(len(x), (min(size, len(x)),), generator=gen)]


def _summary(values: list[float], **extra: Any) -> dict[str, Any]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "runs": [float(v) for v in values], **extra}


def discriminative_score(real: Any, synthetic: Any, iterations: int = 2000, batch_size: int = 128,
                         runs: int = 5, seed: int = 0) -> dict[str, Any]:
    """TimeGAN's post-hoc discriminative score of two ``(S, N, M)`` sets: mean ± sd of ``|acc − 0.5|``.

    The larger set is subsampled (seeded) to the smaller's size, so chance is 0.5.
    """
    _check(iterations, batch_size, runs)
    r, s = _pair(real, synthetic, min_len=5)
    rng = np.random.default_rng(seed)
    n = min(len(r), len(s))
    r, s = r[rng.permutation(len(r))[:n]], s[rng.permutation(len(s))[:n]]
    hidden, scores = gru_hidden(r.shape[2]), []
    for run in range(runs):
        gen = torch.Generator().manual_seed(seed * 1000 + run)
        torch.manual_seed(seed * 1000 + run)
        cut = max(1, min(n - 1, int(round(0.8 * n))))
        pr, ps = torch.randperm(n, generator=gen), torch.randperm(n, generator=gen)
        rt, rv = torch.from_numpy(r)[pr[:cut]], torch.from_numpy(r)[pr[cut:]]
        st, sv = torch.from_numpy(s)[ps[:cut]], torch.from_numpy(s)[ps[cut:]]
        net = _GRUHead(r.shape[2], hidden, per_step=False)
        opt = torch.optim.Adam(net.parameters())
        loss_fn = nn.BCEWithLogitsLoss()
        for _ in range(iterations):
            xb = torch.cat([_batch(rt, batch_size, gen), _batch(st, batch_size, gen)])
            yb = torch.cat([torch.ones(min(batch_size, len(rt))), torch.zeros(min(batch_size, len(st)))])
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xb).squeeze(1), yb).backward()
            opt.step()
        with torch.no_grad():
            hits = (net(rv).squeeze(1) > 0).sum() + (net(sv).squeeze(1) <= 0).sum()
        scores.append(abs(float(hits) / (len(rv) + len(sv)) - 0.5))
    return _summary(scores, hidden=hidden, iterations=iterations, n_per_side=n)


def _predictive_io(x: Tensor) -> tuple[Tensor, Tensor]:
    """Inputs ``(S, N-1, C)`` and targets ``(S, N-1, 1)``: the other channels -> the last channel one step
    ahead (``M > 1``), or the series -> its next value (``M = 1``)."""
    if x.shape[2] == 1:
        return x[:, :-1], x[:, 1:]
    return x[:, :-1, :-1], x[:, 1:, -1:]


def predictive_score(real: Any, synthetic: Any, iterations: int = 5000, batch_size: int = 128,
                     runs: int = 5, seed: int = 0) -> dict[str, Any]:
    """Train-on-synthetic, test-on-real MAE (TimeGAN's predictive score), mean ± sd over ``runs``."""
    _check(iterations, batch_size, runs)
    r, s = _pair(real, synthetic, min_len=1)
    if r.shape[1] < 2:
        raise ValueError(f"the predictive score needs series of at least 2 steps, got N = {r.shape[1]}")
    xs, ys = _predictive_io(torch.from_numpy(s))
    xr, yr = _predictive_io(torch.from_numpy(r))
    hidden, scores = gru_hidden(r.shape[2]), []
    for run in range(runs):
        gen = torch.Generator().manual_seed(seed * 1000 + run)
        torch.manual_seed(seed * 1000 + run)
        net = _GRUHead(xs.shape[2], hidden, per_step=True)
        opt = torch.optim.Adam(net.parameters())
        for _ in range(iterations):
            idx = torch.randint(len(xs), (min(batch_size, len(xs)),), generator=gen)
            opt.zero_grad(set_to_none=True)
            (torch.sigmoid(net(xs[idx])) - ys[idx]).abs().mean().backward()
            opt.step()
        with torch.no_grad():
            scores.append(float((torch.sigmoid(net(xr)) - yr).abs().mean()))
    return _summary(scores, hidden=hidden, iterations=iterations,
                    variant="next value of the series" if r.shape[2] == 1 else "last channel from the others")

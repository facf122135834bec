"""The quality yardstick: classifier two-sample tests of sample sets (per-band spectral error and paired
deviation, the shadow test's statistics, are in :mod:`pyfdc.e2crf.shadow`).

Two questions, two references (see ``docs/QUALITY.md``):

* *Sampler* questions (did caching or fewer steps change what is sampled?): candidate vs the
  uncached 1,000-step EM set of the same model, next to the **floor** (a second uncached 1,000-step
  set with another seed). :func:`sampler_report`.
* *Model* questions (does the model sample the data?): generated vs held-out series, next to the
  data floor (train vs held-out) and a fitted Gaussian. :func:`data_report`.

The headline is the C2ST: the cross-validated held-out accuracy of a classifier telling set A from
set B (0.5 = indistinguishable, 1.0 = disjoint), with a Wilson 95% interval. Two classifiers, since
each is blind where the other sees:

* ``"hgb"`` — gradient-boosted trees (scikit-learn ``HistGradientBoostingClassifier``) on ~20
  per-series summary statistics per channel (:func:`summary_features`: moments, quantiles,
  roughness, first/last values, edge levels, log power in 8 frequency bands). Sharp on anything a
  statistic captures (jitter, a wandering pad, a band's power, heavy tails), non-linear in them;
  blind to the *shape* of a series beyond those statistics (e.g. where a peak sits).
* ``"linear"`` — standardised logistic regression on the raw series + log |rFFT| + roughness +
  max (:func:`raw_features`). Sees every time step and every bin, but only linearly: a strong
  signal in one statistic is diluted among hundreds of raw features.

scikit-learn is the optional ``eval`` extra (also in ``test``); everything else needs only numpy.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pyfdc._arrays import as_series, check_same_shape
from pyfdc.e2crf.shadow import band_spectral_error, same_noise_pairs
from pyfdc.series_summary import summary_features

__all__ = [
    "C2ST_CLASSIFIERS", "C2STResult", "summary_features", "raw_features", "c2st", "c2st_report",
    "constant_pad", "shape_stats", "gaussian_baseline", "sampler_report", "data_report",
]

C2ST_CLASSIFIERS: tuple[str, ...] = ("hgb", "linear")
_series, _same_shape = as_series, check_same_shape


def _sklearn() -> Any:
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise ImportError("the C2ST needs scikit-learn: pip install 'pyfdc[eval]' (or scikit-learn)") from exc
    return sklearn


# ----------------------------------------------------------------------------- features


def raw_features(x: Any) -> np.ndarray:
    """``(S, N·M + N'·M + 2M)``: the series, log |rFFT|, mean |Δx| and max, for the ``"linear"`` C2ST."""
    arr = _series(x, "x")
    s = arr.shape[0]
    spec = np.log(np.abs(np.fft.rfft(arr, axis=1, norm="ortho")) + 1e-6)
    rough = np.abs(np.diff(arr, axis=1)).mean(1)
    return np.concatenate([arr.reshape(s, -1), spec.reshape(s, -1), rough, arr.max(1)], axis=1)


# ----------------------------------------------------------------------------- C2ST


@dataclass(frozen=True)
class C2STResult:
    """Held-out accuracy of a classifier telling A from B; ``ci`` is the Wilson 95% interval."""

    accuracy: float
    ci_low: float
    ci_high: float
    n_per_side: int
    classifier: str
    folds: int
    p_value: float  # one-sided binomial (normal approx.) for accuracy > 0.5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.accuracy:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}] ({self.classifier}, n={self.n_per_side})"


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def _make_classifier(name: str, seed: int) -> Any:
    _sklearn()
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        # No early stopping: it would carve its own validation split and make accuracy depend on n.
        # Depth-3 trees: on a known mean shift they reach Bayes accuracy (0.686 vs 0.69) where the
        # default depth overfits (0.658), with the same null behaviour.
        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_depth=3,
                                              early_stopping=False, random_state=seed)
    from sklearn.linear_model import LogisticRegression

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))


def c2st(a: Any, b: Any, classifier: str = "hgb", folds: int = 5, seed: int = 0) -> C2STResult:
    """Classifier two-sample test of series sets ``a`` and ``b`` (each ``(S, N, M)``).

    The larger set is subsampled (seeded) to the smaller's size, so chance is exactly 0.5. Every
    series is predicted once by a classifier trained on the other folds (stratified ``folds``-fold,
    shuffled with ``seed``); scaling is fitted inside each fold. Accuracy over all ``2n``
    predictions, Wilson 95% CI. Deterministic for a given seed.
    """
    if classifier not in C2ST_CLASSIFIERS:
        raise ValueError(f"classifier must be one of {C2ST_CLASSIFIERS}, got {classifier!r}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an int >= 2, got {folds!r}")
    xa, xb = _series(a, "a"), _series(b, "b")
    _same_shape(xa, xb, ("a", "b"))
    n = min(len(xa), len(xb))
    if n < folds:
        raise ValueError(f"c2st needs at least folds={folds} series per side, got {len(xa)} and {len(xb)}")
    rng = np.random.default_rng(seed)
    xa = xa[np.sort(rng.choice(len(xa), n, replace=False))] if len(xa) > n else xa
    xb = xb[np.sort(rng.choice(len(xb), n, replace=False))] if len(xb) > n else xb
    feats = summary_features if classifier == "hgb" else raw_features
    x = np.concatenate([feats(xa), feats(xb)])
    y = np.concatenate([np.zeros(n, dtype=int), np.ones(n, dtype=int)])
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    pred = cross_val_predict(_make_classifier(classifier, seed), x, y, cv=cv)
    k = int((pred == y).sum())
    lo, hi = _wilson(k, 2 * n)
    acc = k / (2 * n)
    z = (acc - 0.5) / math.sqrt(0.25 / (2 * n))
    return C2STResult(acc, lo, hi, n, classifier, folds, 0.5 * math.erfc(z / math.sqrt(2)))


def c2st_report(a: Any, b: Any, folds: int = 5, seed: int = 0,
                classifiers: tuple[str, ...] = C2ST_CLASSIFIERS) -> dict[str, Any]:
    """Every classifier's :class:`C2STResult` as a dict, plus ``"headline"``: the larger accuracy.

    Sets drawn from the same noise (or the same set twice) are near-twins: a twin with the other label
    in the training folds pulls the accuracy *below* 0.5. Such pairs (:func:`same_noise_pairs`) get a
    warning and ``"same_noise_pairs": True``."""
    res = {name: c2st(a, b, name, folds, seed).to_dict() for name in classifiers}
    best = max(res, key=lambda k: res[k]["accuracy"])
    paired = same_noise_pairs(a, b)
    if paired:
        import warnings

        warnings.warn("c2st_report: the two sets look drawn from the same noise (or are the same set); the C2ST "
                      "reads low for such pairs: draw one of them with another seed", stacklevel=2)
    return {"headline": res[best]["accuracy"], "headline_classifier": best, "same_noise_pairs": paired, **res}


# ----------------------------------------------------------------------------- shape statistics


def constant_pad(x: Any, min_len: int = 4, atol: float = 1e-9) -> tuple[int, float] | None:
    """``(start, value)`` if every series of ``x`` ends in the same constant from ``start`` on."""
    arr = _series(x, "x")
    tail = arr[:, -1:, :]
    value = float(tail[0, 0, 0])
    same = np.all(np.abs(arr - value) <= atol, axis=(0, 2))  # (N,)
    if not same[-1]:
        return None
    start = len(same)
    while start > 0 and same[start - 1]:
        start -= 1
    return (start, value) if len(same) - start >= min_len else None


def shape_stats(x: Any, pad: tuple[int, float] | None = None) -> dict[str, float]:
    """Roughness (mean |Δx|), range (p90 of max |x|), first-value spread (p95 |x₀ - median x₀|) and,
    given a pad ``(start, value)``, the pad residue (p95 of |x - value| over the pad)."""
    arr = _series(x, "x")
    out = {"roughness": float(np.abs(np.diff(arr, axis=1)).mean()),
           "range_p90": float(np.quantile(np.abs(arr).max(axis=(1, 2)), 0.9)),
           "first_value_p95": float(np.quantile(np.abs(arr[:, 0] - np.median(arr[:, 0], axis=0)), 0.95))}
    if pad is not None:
        out["pad_residue_p95"] = float(np.quantile(np.abs(arr[:, pad[0]:] - pad[1]), 0.95))
    return out


def gaussian_baseline(train: Any, n: int, seed: int = 0) -> np.ndarray:
    """``n`` draws ``(n, N, M)`` from N(mean, cov) fitted to the flattened ``train`` series."""
    flat = _series(train, "train").reshape(len(train), -1)
    mean, cov = flat.mean(axis=0), np.cov(flat, rowvar=False)
    draws = np.random.default_rng(seed).multivariate_normal(mean, cov, size=n, method="eigh")
    return draws.reshape(n, *np.shape(train)[1:])


# ----------------------------------------------------------------------------- reports


def sampler_report(candidate: Any, reference: Any, floor: Any | None = None, folds: int = 5,
                   seed: int = 0) -> dict[str, Any]:
    """Sampler vs reference: C2ST (both classifiers), per-band spectral error, SW₂ — for the
    candidate and, when given, for the floor set, side by side."""
    from pyfdc.evaluation.metrics import sliced_wasserstein

    def one(x: Any) -> dict[str, Any]:
        return {"c2st": c2st_report(x, reference, folds, seed), "band_error": band_spectral_error(x, reference),
                "sw_time": float(sliced_wasserstein(x, reference, n_projections=2000, seed=seed))}

    out = {"candidate": one(candidate)}
    if floor is not None:
        out["floor"] = one(floor)
    return out


def data_report(generated: Any, train: Any, test: Any, repeats: int = 10, folds: int = 5,
                seed: int = 0, gaussian: bool = True) -> dict[str, Any]:
    """Model vs held-out data: C2ST of generated vs ``test`` next to the data floor (train vs test) and a
    Gaussian fitted to ``train``; each set is subsampled to ``len(test)`` ``repeats`` times (mean ±
    sd over repeats). Also shape statistics for every set and the per-band error vs ``test``."""
    gen, tr, te = _series(generated, "generated"), _series(train, "train"), _series(test, "test")
    _same_shape(gen, te, ("generated", "test"))
    _same_shape(tr, te, ("train", "test"))
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    sets = {"generated": gen, "floor_train": tr}
    if gaussian:
        sets["gaussian"] = gaussian_baseline(tr, max(len(gen), len(te)), seed)
    pad = constant_pad(np.concatenate([tr, te]))
    out: dict[str, Any] = {"num_heldout": len(te), "repeats": repeats, "pad": pad,
                           "shape_heldout": shape_stats(te, pad)}
    for name, x in sets.items():
        accs: dict[str, list[float]] = {c: [] for c in C2ST_CLASSIFIERS}
        for r in range(repeats):
            for c in C2ST_CLASSIFIERS:
                accs[c].append(c2st(x, te, c, folds, seed + 1000 * r).accuracy)
        row = {c: {"mean": float(np.mean(v)), "sd": float(np.std(v))} for c, v in accs.items()}
        best = max(row, key=lambda c: row[c]["mean"])
        out[name] = {"c2st": {"headline": row[best]["mean"], "headline_classifier": best, **row},
                     "shape": shape_stats(x, pad), "band_error": band_spectral_error(x, te),
                     "num_series": len(x)}
    return out

"""pyfdc.evaluation.plots: PNGs are written (atomically, valid), contents are computed right, bad inputs raise."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pyfdc.evaluation.plots import plot_e2crf_stats, plot_sample_grid, plot_samples, plot_spectral_density, spectral_density

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and data[12:16] == b"IHDR" and data.rstrip().endswith(b"IEND\xaeB`\x82")


@pytest.fixture()
def series() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 20, 2)), rng.normal(size=(9, 20, 2))


def test_spectral_density_values() -> None:
    # Orthonormal rfft: white noise of variance s² has E|X_κ|² = s² at every bin (Parseval).
    x = np.random.default_rng(1).normal(scale=2.0, size=(4000, 16, 1))
    np.testing.assert_allclose(spectral_density(x)[:, 0], 4.0, rtol=0.1)  # 4000 samples: ~2-5% spread per bin
    assert spectral_density(x).shape == (9, 1)


def test_plots_write_pngs(tmp_path: Path, series: tuple[np.ndarray, np.ndarray]) -> None:
    real, gen = series
    plot_spectral_density(real, {"freq": gen, "time": torch.from_numpy(gen[:5])}, tmp_path / "a" / "psd.png")
    plot_spectral_density(real, gen, tmp_path / "psd_single.png")
    plot_samples(real, {"freq": gen}, tmp_path / "grid.png", n=4)
    plot_sample_grid(gen, tmp_path / "grid_cli.png", real=real)
    plot_sample_grid(gen[:2], tmp_path / "grid_only.png", n=8)  # fewer samples than n
    for name in ("a/psd.png", "psd_single.png", "grid.png", "grid_cli.png", "grid_only.png"):
        assert _is_png(tmp_path / name), name
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temp files behind


def _stats(steps: int = 50, tokens: int = 11) -> dict:
    rng = np.random.default_rng(2)
    return {"recomputed_fraction": rng.uniform(0.1, 1.0, steps).tolist(),
            "event_intensity": rng.exponential(size=steps).tolist(),
            "refresh_steps": [0, 20, 40], "token_hit_rate": rng.uniform(0, 1, tokens).tolist(),
            "mode": "e2crf"}


def test_e2crf_stats_png(tmp_path: Path) -> None:
    plot_e2crf_stats(_stats(), tmp_path / "e2.png")
    assert _is_png(tmp_path / "e2.png")

    class Obj:  # anything with to_dict(), like E2CRFStats
        def to_dict(self) -> dict:
            return _stats(5, 3) | {"refresh_steps": []}
    plot_e2crf_stats(Obj(), tmp_path / "e2b.png")
    assert _is_png(tmp_path / "e2b.png")


@pytest.mark.parametrize("change,match", [
    ({"token_hit_rate": None}, "token_hit_rate"),
    ({"refresh_steps": [0, 99]}, "refresh_steps"),
    ({"event_intensity": [1.0, 2.0]}, "same, non-zero length"),
    ({"recomputed_fraction": [float("nan")] * 50}, "NaN"),
    ({"token_hit_rate": [1.5]}, r"\[0, 1\]"),
])
def test_e2crf_stats_bad(tmp_path: Path, change: dict, match: str) -> None:
    stats = _stats() | change
    if change.get("token_hit_rate", 0) is None:
        del stats["token_hit_rate"]
    with pytest.raises(ValueError, match=match):
        plot_e2crf_stats(stats, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_bad_series_inputs(tmp_path: Path, series: tuple[np.ndarray, np.ndarray]) -> None:
    real, gen = series
    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match=r"real must have shape \(n, N, M\)"):
        plot_spectral_density(real[0], gen, out)
    with pytest.raises(ValueError, match="has \\(N, M\\)"):
        plot_spectral_density(real, {"g": gen[:, :10]}, out)
    with pytest.raises(ValueError, match="at least one"):
        plot_samples(real, {}, out)
    bad = gen.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN/Inf"):
        plot_samples(real, {"g": bad}, out)
    with pytest.raises(ValueError, match="positive int"):
        plot_samples(real, gen, out, n=0)
    assert not out.exists()

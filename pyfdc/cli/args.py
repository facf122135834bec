"""Argument parsing for ``pyfdc``: the parser of every command, argument types and the checks that
turn a bad argument into one line on stderr (exit 2). The commands themselves live in
:mod:`pyfdc.cli`."""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn


class UsageError(Exception):
    """A problem with the user's request: reported as ``pyfdc CMD: error: ...`` with exit 2."""


# ----------------------------------------------------------------------------- argument types


def _typed(kind: Callable[[str], Any], check: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


pos_int = _typed(int, lambda v: v >= 1, "an integer >= 1")
nonneg_int = _typed(int, lambda v: v >= 0, "an integer >= 0")
pos_float = _typed(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
nonneg_float = _typed(float, lambda v: v >= 0 and not math.isnan(v), "a number >= 0")
unit_float = _typed(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
open_unit_float = _typed(float, lambda v: 0 < v < 1, "a number in (0, 1)")
seed_int = _typed(int, lambda v: 0 <= v < 2**63, "an integer in [0, 2**63)")


def _ema(text: str) -> float | str:
    if text.strip().lower() == "off":
        return "off"
    return open_unit_float(text)


def checkpoint_dir(text: str) -> Path:
    """A checkpoint folder, or the name of a checkpoint shipped with pyfdc (``ecg_small_freq``, ...)
    when no folder of that name exists."""
    from pyfdc.pretrained import PRETRAINED

    path = Path(text)
    if not path.exists():
        if text in PRETRAINED:
            return PRETRAINED[text]
        raise argparse.ArgumentTypeError(f"{text}: no such checkpoint folder, and no shipped checkpoint of that "
                                         f"name (shipped: {', '.join(sorted(PRETRAINED))})")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; --checkpoint takes a checkpoint folder (the one "
                                         "holding config.json) or a shipped checkpoint's name")
    return path


def _add_out(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--out", type=Path, required=required, metavar="DIR",
                   help="output folder (must be new or empty unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default: cpu)")


def _check_device(name: str) -> str:
    from pyfdc._device import check_device

    try:
        check_device(name)
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None
    return name


def _add_sampler_args(p: argparse.ArgumentParser, auto: bool = False) -> None:
    p.add_argument("--sampler", choices=("em", "ddim", "dpm2m", "e2crf", *(("auto",) if auto else ())), default="em",
                   help="em: Euler-Maruyama (paper default); ddim: deterministic first order; dpm2m: "
                        "DPM-Solver++(2M), deterministic second order (best at few steps); "
                        "e2crf: cached Euler-Maruyama" + (
                            "; auto: the cheapest sampler (solver, steps, cache) that keeps this model's EM-1000 "
                            "distribution, chosen on first use by a C2ST on shadow samples and kept in the "
                            "checkpoint folder" if auto else "") + " (default: em)")
    p.add_argument("--steps", metavar="T", type=pos_int, default=None if auto else 1000,
                   help="reverse steps (default: 1000" + ("; --sampler auto chooses them)" if auto else ")"))
    p.add_argument("--batch-size", metavar="B", type=pos_int, default=64, help="series per batch (default: 64)")
    p.add_argument("--seed", type=seed_int, default=0, help="noise seed (default: 0)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (uncached) or the E2-CRF step (compiles once, ~10-60 s)")
    g = p.add_argument_group("E2-CRF (with --sampler e2crf; each option changes one field of E2CRFConfig(), "
                             "whose budget is this model's own calibration for --steps, made on first use "
                             "and kept in the checkpoint folder)")
    g.add_argument("--e2crf-budget", metavar="F", type=_typed(float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
                   help="share of the tokens recomputed per cached step (default: the model's calibration)")
    g.add_argument("--e2crf-ranking", choices=("drift", "energy"),
                   help="rank stale tokens by plain drift or by the paper's energy-weighted drift (default: drift)")
    g.add_argument("--e2crf-output", dest="e2crf_cached_output", choices=("auto", "features", "gaussian"),
                   help="what a cached token answers (default: auto = gaussian where the model has token moments)")
    g.add_argument("--e2crf-K", dest="e2crf_K", metavar="K", type=_typed(int, lambda v: v >= 0, "an integer >= 0"),
                   help="always-recompute band {0..K} (default: N'//10)")
    g.add_argument("--e2crf-R", dest="e2crf_R", metavar="R", type=pos_int, help="full refresh every R steps (default: 50)")
    g.add_argument("--e2crf-tail", metavar="F", type=_typed(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
                   help="share of the last steps on which every token is recomputed (default: 0; the model's "
                        "calibration chooses its own)")
    g.add_argument("--e2crf-head-every", metavar="N", type=pos_int,
                   help="run the model's time-domain head on cached steps every N steps, adding its last "
                        "correction between (default: 1; the model's calibration chooses its own)")
    g.add_argument("--e2crf-probes", dest="e2crf_num_probes", metavar="P", type=nonneg_int,
                   help="probe tokens per cached step (default: 2)")
    g.add_argument("--e2crf-tau-warn", metavar="TAU", type=pos_float, help="event intensity forcing a refresh (default: 0.5)")
    g.add_argument("--e2crf-tau-safe", metavar="TAU", type=nonneg_float, help="event intensity enabling correction (default: 0.1)")
    g.add_argument("--e2crf-no-feedback", dest="e2crf_feedback", action="store_const", const=False,
                   help="no probes and no Eq. 14 correction (the paper's ablation)")
    g.add_argument("--e2crf-no-warn-refresh", dest="e2crf_warn_refresh", action="store_const", const=False,
                   help="no refresh when the event intensity passes tau_warn (the paper's ablation)")
    g.add_argument("--e2crf-config", metavar="FILE", type=Path,
                   help="calibration.json written by 'pyfdc calibrate' (for the same --steps); replaces the "
                        "other --e2crf-* options")


E2CRF_FLAGS = ("budget", "ranking", "cached_output", "K", "R", "num_probes", "tau_warn", "tau_safe", "feedback",
               "warn_refresh", "tail", "head_every")


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2), pointing at --help instead of printing the usage."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a diffusion model", description=(
        "Train a score network on a dataset's train split (a validation split is carved from it; "
        "the held-out split is never used). --out becomes a checkpoint folder."))
    p.add_argument("--dataset", metavar="NAME", help="dataset name: ecg (default, embedded), sines (TimeGAN's, generated), or one of the paper's "
                   "read from --data-root (ecg-kaggle, nasdaq2019, nasa-charge, nasa-discharge, us-droughts)")
    p.add_argument("--data-root", metavar="DIR", type=Path, help="folder with the dataset's files (not needed for ecg or sines)")
    g = p.add_argument_group("your own data (instead of --dataset)")
    g.add_argument("--data", metavar="FILE", type=Path,
                   help=".npy (S, N[, M]), .npz (train/test arrays, or one array), .csv (a series per line, "
                        "no header), .parquet (needs pyarrow) or a UCR/UEA .ts/.tsv/.txt file (NAME_TRAIN with NAME_TEST "
                        "beside it keeps the archive's split); the checkpoint remembers the file so 'pyfdc evaluate' finds its held-out split")
    g.add_argument("--split", choices=("time", "random"), help="hold out the last series in file order (time, "
                   "default) or a seeded random subset")
    g.add_argument("--test-fraction", metavar="F", type=_typed(float, lambda v: 0 < v < 1, "a number in (0, 1)"),
                   help="held-out share of the series (default: 0.2)")
    g.add_argument("--channels", metavar="M", type=pos_int,
                   help="CSV only: channels per line, stored one after another (default: 1)")
    g.add_argument("--length", metavar="N", type=pos_int,
                   help="CSV long format: one time step (M values) per line, every N lines one series")
    p.add_argument("--config", choices=("small", "paper"), default="small",
                   help="network size: small (CPU) or paper (10 layers, 3.2M params) (default: small)")
    p.add_argument("--domain", choices=("freq", "time", "chart"), default="freq",
                   help="token layout: freq (half-spectrum, default), time or chart (N-token spectrum)")
    p.add_argument("--time-head", metavar="W", type=nonneg_int,
                   help="width of the time-domain head: dilated convolutions over the series that refine the "
                        "transformer's noise prediction locally in time, so samples get the data's sharp "
                        "changes and smooth stretches; 0: none (default: 32 for --domain freq on data with at most "
                        "12.5%% of its energy in the upper half of the spectrum, else none; the last line says which)")
    p.add_argument("--scaling", choices=("channel", "token"), default="channel",
                   help="standardise per channel in time only, or also every token coordinate after the "
                        "transform (equal SNR across frequencies) (default: channel)")
    p.add_argument("--pinning", choices=("auto", "off"), default="auto",
                   help="auto: coordinates constant over the training series (a zero pad, a fixed start) "
                        "get their exact noise prediction and are restored exactly; ignored with --scaling token "
                        "(default: auto)")
    p.add_argument("--epochs", metavar="E", type=pos_int,
                   help="epochs; alone: exactly E, no time budget (default: fitted to --max-minutes, at most 3000)")
    p.add_argument("--batch-size", metavar="B", type=pos_int,
                   help="series per optimiser step (default: 16, the recipe's; on --resume the run's own)")
    p.add_argument("--lr", metavar="LR", type=pos_float, default=1e-3, help="peak learning rate (default: 1e-3)")
    p.add_argument("--weight-decay", metavar="WD", type=nonneg_float, default=1e-2, help="AdamW weight decay (default: 0.01)")
    p.add_argument("--warmup-epochs", metavar="E", type=nonneg_int,
                   help="linear warmup epochs (default: 10%% of the epochs, as the paper's 20/200)")
    p.add_argument("--ema", type=_ema, metavar="DECAY",
                   help="EMA decay of the weights the checkpoint keeps, or 'off' (default: 0.999)")
    p.add_argument("--keep", choices=("best", "last"),
                   help="the weights the checkpoint ends with: the epoch of lowest validation loss, or the last "
                        "epoch's, at the end of the learning-rate schedule (default: last; on --resume the run's own)")
    p.add_argument("--small-t-fraction", metavar="F", type=unit_float, default=0.0,
                   help="fraction of training draws with t log-uniform instead of uniform, so the "
                        "low-noise end (where fine detail is decided) gets trained (default: 0)")
    p.add_argument("--val-fraction", metavar="F", type=unit_float, default=0.1,
                   help="fraction of the train split used for validation (default: 0.1)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed (default: 0)")
    p.add_argument("--max-minutes", metavar="MIN", type=pos_float,
                   help="wall-clock budget; the epochs and the LR schedule are fitted to it (default: 15, "
                        "none with --epochs alone)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    _add_device(p)
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    _add_out(p)


def _sample_parser(sub: Any) -> None:
    p = sub.add_parser("sample", help="draw samples from a checkpoint", description=(
        "Sample series (original units) from a trained checkpoint; writes samples.npy, "
        "sample_info.json and, for e2crf, e2crf_stats.json."))
    p.add_argument("--checkpoint", type=checkpoint_dir, required=True, metavar="DIR",
                   help="checkpoint folder, or the name of a shipped one (e.g. ecg_small_time)")
    p.add_argument("--num-samples", metavar="S", type=pos_int, default=1000, help="series to draw (default: 1000)")
    _add_sampler_args(p, auto=True)
    _add_clip(p)
    _add_device(p)
    _add_out(p)


def _add_clip(p: Any, calibrating: bool = False) -> None:
    extra = (" (a calibration is kept for one clip setting: sample with the one you calibrate with)"
             if calibrating else "")
    p.add_argument("--clip", choices=("auto", "off"), default="auto",
                   help="auto (default): keep samples inside the training data's per-channel range recorded in "
                        "the checkpoint (the denoised estimate is clipped at every step, the series at the end) and "
                        "give them the data's exact band limit, per-series normalisation and stored decimals where the "
                        "checkpoint records them; "
                        "off: sample the network as it is" + extra)


def _calibrate_parser(sub: Any) -> None:
    p = sub.add_parser("calibrate", help="choose an E2-CRF configuration for a checkpoint and step count",
                       description=(
        "Draw shadow series uncached and with each candidate budget (cheapest first) from the same noise, "
        "and keep the first that shifts no per-series statistic (band log power, curvature, the C2ST "
        "classifier's statistics) by more than "
        "--max-shift and is --min-speedup faster; if none does, the result samples uncached. Uses only the "
        "model (no data). Writes "
        "calibration.json for 'pyfdc sample --sampler e2crf --e2crf-config'."))
    p.add_argument("--checkpoint", type=checkpoint_dir, metavar="DIR",
                   help="checkpoint folder or shipped name (default: the shipped ECG model)")
    p.add_argument("--steps", metavar="T", type=pos_int, default=1000, help="sampler steps (default: 1000)")
    p.add_argument("--solver", choices=("em", "ddim", "dpm2m"), default="em", help="solver (default: em)")
    p.add_argument("--budgets", nargs="+", metavar="F", type=_typed(float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
                   help="candidate budgets, tried in increasing order (default: 0.2 0.35 0.5 0.7)")
    p.add_argument("--tail", metavar="F", type=_typed(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
                   help="share of the last steps on which every candidate recomputes every token (default: 0.05)")
    p.add_argument("--head-every", nargs="+", metavar="N", type=pos_int,
                   help="for each budget, the time-domain head's periods on cached steps to try, in this order "
                        "(default: 4 1; models without a time head try each budget once)")
    p.add_argument("--max-shift", metavar="S", type=nonneg_float,
                   help="largest standardised shift of a per-series statistic (band log power, curvature, the C2ST "
                        "classifier's statistics) allowed, "
                        "in sds across series (default: 0.15)")
    p.add_argument("--max-deviation", metavar="D", type=nonneg_float,
                   help="also gate on the median paired relative RMS deviation (default: not a gate)")
    p.add_argument("--max-band-error", metavar="E", type=nonneg_float,
                   help="also gate on the largest |relative band power error| (default: not a gate)")
    p.add_argument("--min-speedup", metavar="X", type=nonneg_float,
                   help="required speedup over uncached on the shadow batch (default: 1.1)")
    _add_clip(p, calibrating=True)
    p.add_argument("--all-candidates", action="store_true",
                   help="measure every candidate (a table) instead of stopping at the first that passes")
    p.add_argument("--shadow", metavar="S", type=_typed(int, lambda v: v >= 4, "an integer >= 4"), default=32,
                   help="shadow series (default: 32)")
    p.add_argument("--batch-size", metavar="B", type=pos_int, default=64, help="series per batch (default: 64)")
    _add_device(p)
    _add_out(p)


def _benchmark_parser(sub: Any) -> None:
    p = sub.add_parser("benchmark", help="time E2-CRF against uncached sampling, side by side", description=(
        "Same checkpoint, same seeds and steps, one process: uncached Euler-Maruyama vs E2-CRF "
        "(after a warm-up, median of --repeats). Prints wall time, speedup, recomputed fraction f, "
        "the FLOP-ideal 1/f and the paired RMS deviation from the uncached samples. The full "
        "speed-quality front is --front (or benchmarks/front.py)."))
    p.add_argument("--checkpoint", type=checkpoint_dir, metavar="DIR",
                   help="checkpoint folder (default: the shipped ECG model)")
    p.add_argument("--num-samples", metavar="S", type=pos_int,
                   help="series per run (default: 64; with --front, series per set: 512)")
    p.add_argument("--repeats", metavar="R", type=pos_int, default=3, help="timed repeats (default: 3)")
    _add_sampler_args(p)
    p.set_defaults(sampler="e2crf")
    _add_device(p)
    f = p.add_argument_group("speed-quality front (--front; see benchmarks/RESULTS.md)")
    f.add_argument("--front", action="store_true",
                   help="time and score every sampler against uncached EM-1000 (C2ST, band error, SW) "
                        "and write front.json / front.md / front.png into --out")
    f.add_argument("--specs", nargs="+", metavar="SPEC",
                   help="samplers for --front, e.g. em:100 dpm2m:25 'e2crf(tau0=1):1000' (default: the full front)")
    f.add_argument("--batch1", metavar="K", type=nonneg_int, default=0,
                   help="with --front, also time K series one at a time per sampler (default: 0)")
    f.add_argument("--threads", metavar="N", type=pos_int, help="torch threads (default: torch's choice)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder of --front (reruns resume from it)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help=argparse.SUPPRESS)


def _evaluate_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score samples against held-out data", description=(
        "Classifier two-sample tests (C2ST: gradient-boosted trees on summary statistics and a "
        "linear model on the raw series) and sliced Wasserstein distances of samples to the "
        "dataset's held-out split, next to the train-vs-held-out floor and a fitted Gaussian; "
        "per-band spectral error, roughness and pad residue; spectral density and "
        "sample grid PNGs, plus E2-CRF statistics plots when the samples came from e2crf."))
    p.add_argument("--checkpoint", type=checkpoint_dir, required=True, metavar="DIR",
                   help="checkpoint folder, or the name of a shipped one (e.g. ecg_small_time)")
    p.add_argument("--samples", type=Path, required=True, metavar="DIR",
                   help="folder written by 'pyfdc sample' (or a .npy file)")
    p.add_argument("--data-root", metavar="DIR", type=Path, help="folder with the dataset's files (not needed for ecg or sines)")
    p.add_argument("--data", metavar="FILE", type=Path,
                   help="the data file the model was trained on, if it moved (its SHA-256 must match)")
    p.add_argument("--projections", metavar="L", type=_typed(int, lambda v: v >= 2, "an integer >= 2"), default=10_000,
                   help="random projections of the SW estimate (default: 10000)")
    p.add_argument("--seed", type=seed_int, default=0, help="projection and C2ST seed (default: 0)")
    p.add_argument("--c2st-repeats", metavar="R", type=nonneg_int, default=5,
                   help="C2ST vs held-out: subsamples of len(held-out) per set, 0 = skip (default: 5)")
    p.add_argument("--field-scores", metavar="RUNS", type=nonneg_int, default=0,
                   help="also the field's discriminative and predictive scores (TimeGAN's GRU recipe: 2,000 / "
                        "5,000 iterations) averaged over RUNS trainings each, for comparison with published tables; "
                        "minutes per run on long series; 0 = skip (default: 0)")
    p.add_argument("--reference", type=Path, metavar="DIR",
                   help="a reference sample folder/.npy (e.g. uncached EM-1000 drawn with another --seed): "
                        "also report the C2ST and band error of --samples against it")
    _add_out(p)


def _demo_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="end-to-end demo on the embedded ECG (a few minutes)", description=(
        "Sample the embedded ECG with the shipped pretrained small model (or, with --minutes, a model "
        "trained here from scratch) using uncached Euler-Maruyama and E2-CRF, and the shipped time-domain "
        "model; score each with a classifier two-sample test (C2ST) against the 91 held-out beats beside "
        "the data floor (train vs held-out) and a fitted Gaussian; write plots and print a table."))
    p.add_argument("--minutes", metavar="MIN", type=pos_float, default=None,
                   help="train a fresh small model for MIN minutes instead of using the shipped one "
                        "(<= 6 min gives visibly worse samples on 2 CPU cores)")
    p.add_argument("--num-samples", metavar="S", type=_typed(int, lambda v: v >= 5, "an integer >= 5"), default=96,
                   help="series per sampler; the C2ST uses min(S, 91 held-out beats) per side (default: 96)")
    p.add_argument("--steps", metavar="T", type=pos_int, default=100,
                   help="EM steps (default: 100; EM-100 is within 0.04 C2ST of EM-1000 on the shipped model)")
    p.add_argument("--c2st-repeats", metavar="R", type=pos_int, default=5,
                   help="held-out subsamples per C2ST (default: 5)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed (default: 0)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--epochs", metavar="E", type=pos_int, default=200, help=argparse.SUPPRESS)
    _add_out(p)

def build_parser() -> argparse.ArgumentParser:
    from pyfdc import __version__

    parser = _OneLineParser(
        prog="pyfdc", description="Frequency-domain diffusion for time series, with E2-CRF caching.")
    parser.add_argument("--version", action="version", version=f"pyfdc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _train_parser(sub)
    _sample_parser(sub)
    _calibrate_parser(sub)
    _benchmark_parser(sub)
    _evaluate_parser(sub)
    _demo_parser(sub)
    return parser

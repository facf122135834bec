"""Copy a trained checkpoint into the package (``pyfdc/pretrained/NAME``), optionally with float16 weights.

Keeps everything the checkpoint's config.json holds (training summary, meta, pins, bounds) and adds
the validation history as ``extra.history`` so the shipped folder documents its own run; the
training state (optimizer, RNG) is not shipped. The destination is replaced only once the new
checkpoint is complete (written to a sibling folder, then swapped in).

    python tools/ship_checkpoint.py runs/paper_freq pyfdc/pretrained/ecg_paper_freq --weights-dtype float16
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from pyfdc.core.checkpoint import WEIGHT_DTYPES, load_checkpoint, save_checkpoint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src", type=Path, help="trained checkpoint folder (pyfdc train --out)")
    p.add_argument("dst", type=Path, help="destination folder, e.g. pyfdc/pretrained/NAME")
    p.add_argument("--weights-dtype", choices=sorted(WEIGHT_DTYPES), default="float32")
    p.add_argument("--fit-bounds", action="store_true",
                   help="record the support bounds of a checkpoint written before they existed: the range of "
                        "its own fit split, rebuilt from its dataset name and train config")
    args = p.parse_args(argv)
    model = load_checkpoint(args.src)
    if args.fit_bounds and model.bounds is None:
        import numpy as np

        from pyfdc.data import load_dataset
        from pyfdc.core.model import DiffusionModel
        from pyfdc.core.support import SupportBounds
        from pyfdc.training.trainer import split_indices

        ds = load_dataset(model.meta["dataset"])
        tc = model.meta["extra"]["training"]["train_config"]
        fit_idx, _ = split_indices(len(ds.train), tc["val_fraction"], tc["seed"])
        if len(fit_idx) != model.meta.get("n_fit", len(fit_idx)):
            sys.exit(f"{args.src}: the rebuilt fit split has {len(fit_idx)} series, the run had {model.meta['n_fit']}")
        bounds = SupportBounds.fit(np.asarray(ds.train[fit_idx], dtype=np.float64))
        model = DiffusionModel(model.net, model.transform, model.sde, model.scaler, meta=model.meta,
                               token_scaler=model.token_scaler, pins=model.pins, bounds=bounds)
    extra = dict(model.meta.get("extra") or {})
    history = args.src / "history.json"
    if history.is_file():
        extra["history"] = [{k: row[k] for k in ("epoch", "train_loss", "val_loss") if k in row}
                            for row in json.loads(history.read_text())]
    staging = args.dst.with_name(args.dst.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    save_checkpoint(staging, model, extra=extra, weights_dtype=args.weights_dtype)
    load_checkpoint(staging)  # refuse to ship what does not load
    old = args.dst.with_name(args.dst.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if args.dst.exists():
        args.dst.rename(old)
    staging.rename(args.dst)
    shutil.rmtree(old, ignore_errors=True)
    print(f"{args.src} -> {args.dst} ({args.weights_dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

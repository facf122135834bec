"""BasicMotions: the best-validation checkpoint vs the final EMA (end of the cosine schedule), 128 EM-1000."""
import sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, "benchmarks"); sys.path.insert(0, "benchmarks/studies")
from suite_data import load_suite_dataset
from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.sampling.sampler import Sampler
from pyfdc.training.config import split_indices
from pyfdc.evaluation.quality import c2st_report
torch.set_num_threads(1)
name, root = sys.argv[1], Path(sys.argv[2])
ds = load_suite_dataset(name)
fit_idx, val_idx = split_indices(len(ds.train), 0.1, 0)
fit, val = ds.train[fit_idx], ds.train[val_idx]
m = load_checkpoint(root / name / "freq")
st = torch.load(root / name / "freq" / "train_state.pt", weights_only=False)
m.net.load_state_dict(st["ema"])
x = Sampler(m, "em").sample(128, steps=1000, batch_size=64, seed=0, progress=False).numpy()
np.save(root / name / "em1000_final_ema.npy", x)
r = [float(np.abs(np.diff(a, axis=1)).mean()) for a in (x, val, fit)]
hl = [c2st_report(x, fit[np.random.default_rng(s).choice(len(fit), min(len(fit), len(x)), replace=False)], seed=s) for s in range(3)]
print(root, "final EMA epoch", st["run"]["epoch"], "roughness gen/val/fit", [round(v, 4) for v in r],
      "C2ST hgb/linear", round(np.mean([h["hgb"]["accuracy"] for h in hl]), 3), round(np.mean([h["linear"]["accuracy"] for h in hl]), 3))

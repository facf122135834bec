"""Sines vs Sines + white noise of 3% of the range: the field's discriminative score next to the C2ST."""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from pyfdc.data.sines import make_sines
from pyfdc.evaluation.field_scores import discriminative_score
from pyfdc.evaluation.quality import c2st_report
real, other = make_sines(2000, seed=1), make_sines(2000, seed=2)
noisy = other + 0.03 * np.random.default_rng(3).standard_normal(other.shape).astype(np.float32)
t = time.time()
out = {"discriminative_noise": discriminative_score(real, noisy), "discriminative_null": discriminative_score(real, other, runs=2),
       "c2st_noise": c2st_report(real[:1000], noisy[:1000]), "c2st_null": c2st_report(real[:1000], other[:1000])}
out["seconds"] = time.time() - t
json.dump(out, open(sys.argv[1], "w"), indent=1)
print({k: (v["mean"] if "mean" in v else v["headline"]) if isinstance(v, dict) else v for k, v in out.items()})

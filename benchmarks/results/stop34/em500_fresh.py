# Is uncached EM-500 as good as auto's BasicMotions choice (E2-CRF f 0.5 at 500 steps)? Its fresh draw (seed 3, 256 series)
# against the independent EM-1000 set auto_choice.py scored the choice on:
#   python benchmarks/results/stop34/em500_fresh.py runs/suite16/basicmotions
import sys, warnings
from pathlib import Path
import numpy as np, torch
from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.evaluation.front import parse_spec, run_sampler
from pyfdc.evaluation.quality import c2st_report
torch.set_num_threads(1)
warnings.simplefilter("ignore")
folder = Path(sys.argv[1])
model, ref = load_checkpoint(folder / "freq"), np.load(folder / "em1000_seed0.npy")
for spec in sys.argv[2:] or ["em:500"]:
    with torch.inference_mode():
        run = run_sampler(model, parse_spec(spec), len(ref), 64, 3)
    print(spec, "fresh C2ST vs EM-1000 seed 0: %.3f" % c2st_report(run.x, ref, seed=3)["headline"], flush=True)

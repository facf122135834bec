# Halves of one EM-1000 seed set vs subsets of two seeds, 8 pairs: python benchmarks/results/stop34/seed_halves.py sines   (needs runs/gate16 from gate_check.py)
import numpy as np, warnings, sys
warnings.simplefilter("ignore")
from pyfdc.evaluation.quality import c2st_report
d = sys.argv[1]
a = np.load(f"runs/gate16/{d}/em1000_seed0.npy"); b = np.load(f"runs/gate16/{d}/em1000_seed2.npy")
same, cross = [], []
for p in range(8):
    rng = np.random.default_rng(100 + p)
    o = rng.permutation(512)
    same.append(c2st_report(a[np.sort(o[:256])], a[np.sort(o[256:])], seed=p)["headline"])
    ia = rng.choice(512, 256, replace=False); ib = rng.choice(512, 256, replace=False)
    cross.append(c2st_report(a[np.sort(ia)], b[np.sort(ib)], seed=p)["headline"])
print(d, "halves of one seed: mean %.3f sd %.3f | seed 0 vs seed 2: mean %.3f sd %.3f" % (np.mean(same), np.std(same, ddof=1), np.mean(cross), np.std(cross, ddof=1)))

# The relabelled null of two EM-1000 subsets (12 relabellings): python benchmarks/results/stop34/permutation_null_em1000.py sines   (needs runs/gate16)
import numpy as np, warnings, sys
warnings.simplefilter("ignore")
from pyfdc.evaluation.auto import permutation_gate
d = sys.argv[1]
a = np.load(f"runs/gate16/{d}/em1000_seed0.npy"); b = np.load(f"runs/gate16/{d}/em1000_seed2.npy")
rng = np.random.default_rng(5)
ia, ib = rng.choice(512, 256, replace=False), rng.choice(512, 256, replace=False)
g, h = permutation_gate(a[np.sort(ia)], b[np.sort(ib)], permutations=12)
print(d, "permutation null of two EM-1000 subsets: mean %.3f sd %.3f gate %.3f" % (np.mean(h), np.std(h, ddof=1), g))

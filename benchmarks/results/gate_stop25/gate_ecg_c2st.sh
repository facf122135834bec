set -e
cd /work/main
export OMP_NUM_THREADS=1
for f in 0.7 0.5; do
  pyfdc sample --checkpoint ecg_small_freq --sampler e2crf --e2crf-budget $f --steps 1000 --num-samples 256 --seed 1 --batch-size 64 --out runs/gate/ecg_e2crf_f$f --no-progress --overwrite
  (cd /tmp && python - $f <<'PY'
import sys, json, numpy as np, warnings
warnings.simplefilter("ignore")
from pyfdc.evaluation.quality import c2st_report
from pyfdc.e2crf.shadow import statistic_shift
f = sys.argv[1]; R = "/work/main/runs/"
x = np.load(f"{R}gate/ecg_e2crf_f{f}/samples.npy")
out = {}
for ref in ("ecg_long_samples", "ecg_long_em1000_s2"):
    r = np.load(f"{R}{ref}/samples.npy")
    out[ref] = {s: c2st_report(x, r, seed=s)["headline"] for s in (0, 1, 2)}
twin = np.load(f"{R}ecg_long_em1000_s1/samples.npy")
sh = statistic_shift(x, twin)
out["shift_vs_twin_256"] = max(sh.values()); out["largest"] = max(sh, key=sh.get)
print(f, json.dumps(out)); json.dump(out, open(f"{R}gate/ecg_f{f}_c2st.json", "w"), indent=1)
PY
)
done

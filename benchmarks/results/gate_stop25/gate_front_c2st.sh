set -e
cd /work/main
export OMP_NUM_THREADS=1
pyfdc sample --checkpoint ecg_small_freq --sampler e2crf --steps 100 --num-samples 256 --seed 1 --batch-size 64 --out runs/gate/ecg_e2crf100_s1 --no-progress --overwrite
pyfdc sample --checkpoint ecg_small_freq --sampler dpm2m --steps 25 --num-samples 256 --seed 1 --batch-size 64 --out runs/gate/ecg_dpm25_s1 --no-progress --overwrite
pyfdc sample --checkpoint ecg_small_freq --sampler em --steps 250 --num-samples 256 --seed 1 --batch-size 64 --out runs/gate/ecg_em250_s1 --no-progress --overwrite
cd /tmp && python - <<'PY'
import json, numpy as np, warnings
warnings.simplefilter("ignore")
from pyfdc.evaluation.quality import c2st_report
R = "/work/main/runs/"
sets = {"e2crf:100": "gate/ecg_e2crf100_s1", "em:100": "ecg_long_em100_s1", "dpm2m:25": "gate/ecg_dpm25_s1",
        "em:250": "gate/ecg_em250_s1", "dpm2m:10": "ecg_long_dpm10_s1", "e2crf:1000": "gate/ecg_e2crf_f0.2_t05",
        "em:1000 (floor)": "ecg_long_em1000_s1"}
out = {}
for name, d in sets.items():
    x = np.load(f"{R}{d}/samples.npy")
    row = {}
    for ref in ("ecg_long_samples", "ecg_long_em1000_s2"):
        r = np.load(f"{R}{ref}/samples.npy")
        row[ref] = [c2st_report(x, r, seed=s)["headline"] for s in (0, 1, 2)]
    row["mean"] = float(np.mean(row["ecg_long_samples"] + row["ecg_long_em1000_s2"]))
    out[name] = row
    print(name, json.dumps(row), flush=True)
json.dump(out, open(f"{R}gate/ecg_front_c2st.json", "w"), indent=1)
PY

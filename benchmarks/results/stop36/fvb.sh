#!/bin/bash
# Issue 24: best-validation checkpoint vs final EMA, from the same 8-minute trainings of the recipe (pyfdc train's
# defaults; one thread; two chains side by side, as the stop-33 batch-16 models were trained).
# usage (from the repository root): benchmarks/results/stop36/fvb.sh D1 [D2 ...]
mkdir -p runs/fvb
for D in "$@"; do
  N=128; [ "$D" = osuleaf ] && N=64
  OMP_NUM_THREADS=1 python benchmarks/suite.py --out runs/fvb --datasets $D --stages train --domains freq --minutes 8 > runs/fvb/$D.train.log 2>&1
  echo "$D trained $(date)" >> runs/fvb/progress
done
for D in "$@"; do
  N=128; [ "$D" = osuleaf ] && N=64
  OMP_NUM_THREADS=1 python benchmarks/studies/final_vs_best.py --run runs/fvb --datasets $D --num-samples $N --held-out > runs/fvb/$D.fvb.md 2> runs/fvb/$D.fvb.err
  echo "$D scored $(date)" >> runs/fvb/progress
done

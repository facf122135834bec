#!/bin/bash
# stop 39: EM-1000 vs the every-step choice vs the head-reuse choice, side by side (batch 64, one thread)
for D in "$@"; do
  OMP_NUM_THREADS=1 python benchmarks/front.py time --checkpoint runs/s39/$D/freq --batch-size 64 --rounds 2 em:1000 \
    'e2crf(budget=0.2,tail=0.05,head_every=1):1000' 'e2crf(budget=0.2,tail=0.05,head_every=4):1000' > runs/s39/$D.time.md 2>&1
  echo "$D time rc=$? $(date)" >> runs/s39/progress
done

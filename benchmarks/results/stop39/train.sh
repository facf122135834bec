#!/bin/bash
# stop 39: suite models for the head-reuse check (recipe, 8 minutes, one thread)
for D in "$@"; do
  OMP_NUM_THREADS=1 python benchmarks/suite.py --out runs/s39 --datasets $D --stages train --domains freq --minutes 8 > runs/s39/$D.train.log 2>&1
  echo "$D trained rc=$? $(date)" >> runs/s39/progress
done

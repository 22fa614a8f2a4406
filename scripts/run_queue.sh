#!/usr/bin/env bash
# Run the DVC experiment queue to the end: `scripts/run_queue.sh [JOBS]` (default 1).
#
# With JOBS > 1 each worker runs torch on one thread (OMP_NUM_THREADS=1): two workers with the
# default two threads each on a 2-core machine run many times slower than one. Results of a
# one-thread run differ from a two-thread run in float rounding only.
set -euo pipefail
JOBS=${1:-1}
if [ "$JOBS" -gt 1 ]; then export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1; fi
dvc queue start --jobs "$JOBS"
sleep 10
while status=$(dvc queue status) && grep -Eq "Queued|Running" <<<"$status"; do
  # the queue's worker can exit with tasks left (a broker read race in celery's filesystem
  # transport was seen here): start new workers when nothing runs and no worker is alive
  if grep -q "0 active, 0 idle" <<<"$status" && ! grep -q "Running" <<<"$status"; then
    dvc queue start --jobs "$JOBS"
  fi
  sleep 30
done
dvc queue status

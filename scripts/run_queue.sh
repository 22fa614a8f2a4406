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
short=0
while status=$(dvc queue status) && grep -Eq "Queued|Running" <<<"$status"; do
  # a queue worker can exit with tasks left (a broker read race in celery's filesystem transport
  # was seen here), leaving fewer workers than JOBS: when tasks are queued and fewer than JOBS
  # workers are alive on two polls in a row, start the missing ones (`dvc queue start --jobs N`
  # starts only the numbered workers 1..N that are not alive)
  active=$(sed -n 's/.*Worker status: \([0-9]*\) active.*/\1/p' <<<"$status")
  if grep -q "Queued" <<<"$status" && [ "${active:-0}" -lt "$JOBS" ]; then
    short=$((short + 1))
    if [ "$short" -ge 2 ]; then
      echo "run_queue: $active of $JOBS workers alive with tasks queued; starting the missing ones"
      dvc queue start --jobs "$JOBS"
      short=0
    fi
  else
    short=0
  fi
  sleep 30
done
dvc queue status

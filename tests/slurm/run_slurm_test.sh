#!/usr/bin/env bash
# `make test-slurm`: run the workflow through a real one-node SLURM cluster on this machine.
#
# 1. starts a private SLURM (tests/slurm/local_slurm.sh: installs Debian's slurm-wlm + munge when
#    missing, as root; CPU partition `local_cpu`, GPU partition `local_gpu` with a fake GRES GPU),
# 2. runs tests/slurm/test_slurm_run.py (pytest -m slurm): the demo slice of tests/slurm/config.yaml
#    with `--profile profiles/slurm` (partitions and conda switched by the profile's HCSFLOW_*
#    variables), then the same run locally, and compares them,
# 3. stops the daemons it started (by PID), also on failure or Ctrl-C.
#
# Environment: KEEP=1 keeps the scratch folder (also kept when the test fails).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hcsflow-slurm-test.XXXXXX")
chmod 755 "$WORK"  # munged runs as user munge and keeps its socket under $WORK/cluster
CLUSTER=$WORK/cluster
status=1

cleanup() {
  bash "$REPO/tests/slurm/local_slurm.sh" stop "$CLUSTER" || true
  if [[ $status -eq 0 && "${KEEP:-0}" != 1 ]]; then
    rm -rf "$WORK"
  else
    echo "[test-slurm] scratch folder kept: $WORK (cluster logs in $CLUSTER/log)" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$REPO"
bash tests/slurm/local_slurm.sh start "$CLUSTER"
eval "$(bash tests/slurm/local_slurm.sh env "$CLUSTER")"
export HCSFLOW_SLURM_TEST_DIR=$WORK
sinfo

# tests/slurm is not in pytest's default testpaths, so `make test` never collects it.
"$PYTHON" -m pytest -m slurm tests/slurm -v -rP -p no:cacheprovider
status=0

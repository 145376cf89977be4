#!/usr/bin/env bash
# A private one-node SLURM cluster on this machine, for testing the slurm profile.
#
#   tests/slurm/local_slurm.sh start DIR   # install (root, Debian) if missing, configure, start
#   tests/slurm/local_slurm.sh stop DIR    # cancel its jobs, stop the daemons it started (by PID)
#   tests/slurm/local_slurm.sh env DIR     # print the exports clients need (eval "$(... env DIR)")
#
# Everything lives under DIR: slurm.conf + gres.conf, a private munge key/socket, state, spool,
# logs and the daemons' PID files. Nothing under /etc is changed, so an existing SLURM or munge on
# the machine is left alone. The node offers two partitions, CPU (default) and GPU, and a fake GRES
# GPU (File=/dev/null) so rules that ask for `gpu=1` are really scheduled as GPU jobs; inside them
# no CUDA device exists and hcsflow falls back to the CPU (and says so in the rule's log).
#
# Environment (optional): LOCAL_SLURM_CPU_PARTITION (default local_cpu),
# LOCAL_SLURM_GPU_PARTITION (default local_gpu), LOCAL_SLURM_MEM_MB (RealMemory; default: total
# memory minus 1 GB).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z "$cmd" || -z "$dir" ]]; then
  echo "usage: $0 start|stop|env|status DIR" >&2
  exit 2
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
CPU_PART=${LOCAL_SLURM_CPU_PARTITION:-local_cpu}
GPU_PART=${LOCAL_SLURM_GPU_PARTITION:-local_gpu}

log() { echo "[local_slurm] $*" >&2; }

install_if_missing() {
  local missing=0
  for exe in sbatch squeue scancel sinfo slurmctld slurmd munged; do
    command -v "$exe" >/dev/null 2>&1 || [[ -x /usr/sbin/$exe ]] || missing=1
  done
  if ((missing)); then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
      log "SLURM/munge missing and cannot install them (need root on Debian/Ubuntu)"
      exit 1
    fi
    log "installing slurm-wlm and munge with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >"$dir/apt.log" 2>&1 \
      || { tail -20 "$dir/apt.log" >&2; exit 1; }
  fi
}

free_port() {
  # First port of a pair (p, p+1) nobody listens on, from 16817 up.
  local p=16817
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || (exec 3<>"/dev/tcp/127.0.0.1/$((p + 1))") 2>/dev/null; do
    p=$((p + 2))
  done
  echo "$p"
}

pid_alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
  local host cpus_line mem port
  host=$(hostname -s)
  # slurmd -C prints this machine's CPU layout as slurm.conf wants it.
  cpus_line=$(/usr/sbin/slurmd -C | head -1 | grep -o 'CPUs=.*ThreadsPerCore=[0-9]*')
  # slurmd drains a node that claims more memory than it has; SLURM only books requests against it.
  mem=${LOCAL_SLURM_MEM_MB:-$(awk '/MemTotal/ {print int($2/1024) - 1024}' /proc/meminfo)}
  port=$(free_port)
  mkdir -p "$dir"/{state,spool/slurmd,run,log}
  cat >"$dir/slurm.conf" <<EOF
# Written by tests/slurm/local_slurm.sh: a one-node test cluster, no accounting database.
ClusterName=hcsflowtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SchedulerType=sched/backfill
DefMemPerCPU=1000
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# One line per finished job (id, partition, state, times): the test reads it, as there is no sacct
# without an accounting database. Its Tres= lacks gres/gpu (tracking GPUs as a TRES,
# AccountingStorageTRES=gres/gpu, needs slurmdbd): the GPU request is in scontrol's TresPerJob.
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
# The executor plugin polls with squeue here (no sacct without slurmdbd); finished jobs must stay
# visible to squeue for >= 3 x its init interval (and the test lists them all at the end).
MinJobAge=3600
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 $cpus_line RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=$CPU_PART Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=$GPU_PART Nodes=$host Default=NO MaxTime=INFINITE State=UP
EOF
  # A fake GPU: /dev/null as the device file. Jobs get CUDA_VISIBLE_DEVICES but no real device.
  echo "NodeName=$host Name=gpu File=/dev/null Count=1" >"$dir/gres.conf"
  # Inside a job, snakemake-executor-plugin-slurm-jobstep starts each rule with `srun` after
  # removing every SLURM_* variable (SLURM_CONF included) from its environment, so a bare srun
  # would look for /etc/slurm/slurm.conf. A real cluster has that file; this private cluster gets
  # an srun wrapper on PATH instead (PATH survives), so nothing under /etc is touched.
  mkdir -p "$dir/bin"
  printf '#!/bin/sh\nSLURM_CONF=%s/slurm.conf exec %s "$@"\n' "$dir" "$(command -v srun)" >"$dir/bin/srun"
  chmod 755 "$dir/bin/srun"
}

start_munge() {
  local m=$dir/munge
  if pid_alive "$m/munged.pid"; then return; fi
  mkdir -p "$m"
  # munged (running as user munge) insists on a private key and a socket dir it owns.
  chmod 755 "$dir"
  if [[ ! -s "$m/munge.key" ]]; then
    dd if=/dev/urandom of="$m/munge.key" bs=1 count=1024 status=none
  fi
  chown -R munge:munge "$m"
  chmod 400 "$m/munge.key"
  chmod 755 "$m"
  if ! runuser -u munge -- test -w "$m"; then
    log "user munge cannot reach $m: make its parent folders world-executable (chmod a+x)"
    exit 1
  fi
  runuser -u munge -- /usr/sbin/munged --socket="$m/munge.socket" --key-file="$m/munge.key" \
    --pid-file="$m/munged.pid" --log-file="$m/munged.log" --seed-file="$m/munged.seed"
  for _ in $(seq 50); do [[ -S "$m/munge.socket" ]] && return; sleep 0.1; done
  log "munged did not start; see $m/munged.log"
  exit 1
}

start() {
  install_if_missing
  if pid_alive "$dir/run/slurmctld.pid"; then
    log "already running in $dir"
    return
  fi
  write_conf
  start_munge
  export SLURM_CONF=$dir/slurm.conf
  /usr/sbin/slurmctld -i
  /usr/sbin/slurmd
  # Wait until the node is idle and accepts jobs.
  for _ in $(seq 60); do
    if sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(idle|mix)'; then
      log "up: SLURM_CONF=$SLURM_CONF partitions $CPU_PART (default), $GPU_PART (gres gpu:1)"
      return
    fi
    sleep 0.5
  done
  log "node did not become idle:"
  sinfo -N -l >&2 || true
  tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
  stop
  exit 1
}

stop_pid() {
  local pidfile=$1 name=$2 pid
  [[ -s "$pidfile" ]] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name ($pid) still running; SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

stop() {
  if [[ -f "$dir/slurm.conf" ]] && pid_alive "$dir/run/slurmctld.pid"; then
    SLURM_CONF=$dir/slurm.conf scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    sleep 1
  fi
  stop_pid "$dir/run/slurmd.pid" slurmd
  stop_pid "$dir/run/slurmctld.pid" slurmctld
  stop_pid "$dir/munge/munged.pid" munged
  log "stopped daemons in $dir"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$dir/slurm.conf PATH=$dir/bin:\$PATH" ;;
  status)
    export SLURM_CONF=$dir/slurm.conf
    sinfo && squeue --states=all
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac

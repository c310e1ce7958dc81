#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (root, no systemd), for CI and for trying
# the templates locally:   sudo scripts/slurm/local-cluster.sh up|down|status
# Installs slurmctld/slurmd/slurm-client/munge with apt-get when they are missing (Debian/Ubuntu).
# Fast requeue settings (cred_expire=10, 5 s scheduler passes) so a requeued job restarts in ~12 s
# instead of ~120 s. HPML_FAKE_GPUS=N (default 2) adds N fake GPU devices for --gres=gpu:N
# scheduling (character devices; the jobs still run on the CPU).
set -euo pipefail
STATE=${HPML_SLURM_STATE:-/var/tmp/hpml-slurm}
CONF=/etc/slurm/slurm.conf
GPUS=${HPML_FAKE_GPUS:-2}

need_root() { [ "$(id -u)" -eq 0 ] || { echo "error: local-cluster.sh needs root (it starts munged, slurmctld, slurmd)" >&2; exit 2; }; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null && return
  command -v apt-get >/dev/null || { echo "error: slurm is not installed and apt-get is missing; install slurmctld slurmd slurm-client munge" >&2; exit 2; }
  echo "installing slurmctld slurmd slurm-client munge ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

start_munge() {
  pgrep -x munged >/dev/null && return
  [ -s /etc/munge/munge.key ] || mungekey --create
  chown munge:munge /etc/munge/munge.key; chmod 600 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged
}

write_conf() {
  local node host gres=""
  host=$(hostname -s)
  node=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$host/")
  mkdir -p "$STATE"/{ctld,d} /etc/slurm
  if [ "$GPUS" -gt 0 ]; then
    for i in $(seq 0 $((GPUS - 1))); do
      [ -c "$STATE/fakegpu$i" ] || mknod "$STATE/fakegpu$i" c 195 $((200 + i))  # regular files are refused
    done
    echo "Name=gpu File=$STATE/fakegpu[0-$((GPUS - 1))]" > /etc/slurm/gres.conf
    gres="Gres=gpu:$GPUS"
  else
    rm -f /etc/slurm/gres.conf
  fi
  cat > "$CONF" <<CONF
# written by hpml scripts/slurm/local-cluster.sh
ClusterName=hpml-local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5,sched_interval=5
JobRequeue=1
ReturnToService=2
MpiDefault=none
KillWait=5
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
GresTypes=gpu
$node $gres State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

up() {
  need_root; install_packages
  local t0=$EPOCHREALTIME
  start_munge
  if ! pgrep -x slurmctld >/dev/null; then write_conf; slurmctld; fi
  pgrep -x slurmd >/dev/null || slurmd
  for _ in $(seq 1 120); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
      printf 'local SLURM cluster up in %.1f s: %s\n' "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" "$(sinfo -h -o '%P %D %T %C')"
      return 0
    fi
    sleep 0.5
  done
  echo "error: the local SLURM node did not become idle; see $STATE/slurmctld.log and $STATE/slurmd.log" >&2
  exit 1
}

down() {
  need_root
  local pid
  for f in "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
    [ -s "$f" ] || continue
    pid=$(cat "$f"); kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done  # gone before its state is removed
  done
  rm -rf "${STATE:?}/ctld" "${STATE:?}/d"  # forget the jobs (job ids start again at 1)
  echo "local SLURM cluster stopped (munged left running)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) sinfo; squeue ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac

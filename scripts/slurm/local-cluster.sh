#!/usr/bin/env bash
# A real SLURM cluster on this machine (root, no systemd), for CI and for trying the templates
# locally:   sudo scripts/slurm/local-cluster.sh up [--nodes N] | down | status
#            sudo scripts/slurm/local-cluster.sh throttle NODE RATE | unthrottle NODE
# --nodes 1 (the default): one slurmd on this host. --nodes N >= 2: N nodes, each in its own
# network namespace (hpml-n1 ... hpml-nN at 10.213.7.11 ...) on a bridge hpmlbr0 (10.213.7.1)
# with entries in /etc/hosts, one slurmd per node, slurmctld on the bridge address; every packet
# stays between the namespaces this script makes. The file system is shared: every node sees the
# same run folders, as on a cluster with a shared /scratch.
# throttle hpml-n2 20mbit: a token bucket (tc qdisc tbf) on the node's link inside its namespace, so
# what the node sends leaves at that rate (a slow or shared network, for measuring communication);
# unthrottle removes it. (This kernel offers tbf; netem's delay/loss may be missing.)
# Installs slurmctld/slurmd/slurm-client/munge with apt-get when they are missing (Debian/Ubuntu).
# Fast requeue settings (cred_expire=10, 5 s scheduler passes) so a requeued job restarts in ~12 s
# instead of ~120 s. HPML_FAKE_GPUS=N (default 2) adds N fake GPU devices per node for
# --gres=gpu:N scheduling (character devices; the jobs still run on the CPU); HPML_NODE_CPUS=N
# (default 4) the CPUs each node of a multi-node cluster declares.
set -euo pipefail
STATE=${HPML_SLURM_STATE:-/var/tmp/hpml-slurm}
CONF=/etc/slurm/slurm.conf
GPUS=${HPML_FAKE_GPUS:-2}
NODES=1
NODE_CPUS=${HPML_NODE_CPUS:-4}  # CPUs each node declares (they share this machine's cores)
NET=10.213.7          # a private /24 of our own: the bridge is .1, node i is .(10+i)
BRIDGE=hpmlbr0
TAG="# hpml local-cluster"  # marks our /etc/hosts lines; down removes exactly these

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

node_names() { local i; for i in $(seq 1 "$1"); do echo "hpml-n$i"; done; }

# fake_gpus DIR: GPUS character devices in DIR (slurm refuses regular files); prints the File= spec
fake_gpus() {
  mkdir -p "$1"
  for i in $(seq 0 $((GPUS - 1))); do
    [ -c "$1/fakegpu$i" ] || mknod "$1/fakegpu$i" c 195 $((200 + i))
  done
  echo "File=$1/fakegpu[0-$((GPUS - 1))]"
}

write_conf() {
  local host nodes lines="" gres="" node i
  host=$(hostname -s)
  mkdir -p "$STATE"/{ctld,d} /etc/slurm
  rm -f /etc/slurm/gres.conf
  if [ "$NODES" -eq 1 ]; then
    [ "$GPUS" -gt 0 ] && { echo "Name=gpu $(fake_gpus "$STATE")" > /etc/slurm/gres.conf; gres="Gres=gpu:$GPUS"; }
    node=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$host/")
    lines="$node $gres State=UNKNOWN"
    nodes=$host
    set -- "SlurmctldHost=$host" "TaskPlugin=task/affinity" "SlurmdSpoolDir=$STATE/d" \
      "SlurmdPidFile=$STATE/slurmd.pid" "SlurmdLogFile=$STATE/slurmd.log"
  else
    [ "$GPUS" -gt 0 ] && gres="Gres=gpu:$GPUS"
    for i in $(seq 1 "$NODES"); do
      node=hpml-n$i
      [ "$GPUS" -gt 0 ] && echo "NodeName=$node Name=gpu $(fake_gpus "$STATE/gpu/$node")" >> /etc/slurm/gres.conf
      lines+="NodeName=$node NodeAddr=$NET.$((10 + i)) CPUs=$NODE_CPUS RealMemory=4000 $gres State=UNKNOWN"$'\n'
    done
    nodes="hpml-n[1-$NODES]"
    # slurmctld accepts only this host's own name as SlurmctldHost; the nodes reach it on the bridge.
    # %n: one spool folder, pid file and log per node. task/none: no cgroup setup per namespace.
    # config_overrides: the nodes may declare more CPUs than this machine has (they share its cores).
    set -- "SlurmctldHost=$host($NET.1)" "TaskPlugin=task/none" "SlurmdParameters=config_overrides" "SlurmdSpoolDir=$STATE/d/%n" \
      "SlurmdPidFile=$STATE/slurmd-%n.pid" "SlurmdLogFile=$STATE/slurmd-%n.log"
  fi
  {
    echo "# written by hpml scripts/slurm/local-cluster.sh (--nodes $NODES)"
    echo "ClusterName=hpml-local"
    printf '%s\n' "$@"
    cat <<CONF
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5,sched_interval=5
JobRequeue=1
ReturnToService=2
MpiDefault=none
KillWait=5
StateSaveLocation=$STATE/ctld
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmctldLogFile=$STATE/slurmctld.log
GresTypes=gpu
${lines}
PartitionName=debug Nodes=$nodes Default=YES MaxTime=INFINITE State=UP
CONF
  } > "$CONF"
}

# The bridge, one namespace + veth pair per node, the hosts entries; each step skipped when done.
make_network() {
  local i node
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  [[ "$(ip addr show dev "$BRIDGE")" == *"inet $NET.1/"* ]] || ip addr add "$NET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for i in $(seq 1 "$NODES"); do
    node=hpml-n$i
    [ -e "/run/netns/$node" ] || ip netns add "$node"
    if ! ip link show "hpml-v$i" >/dev/null 2>&1; then
      ip -n "$node" link del eth0 2>/dev/null || true
      ip link add "hpml-v$i" type veth peer name eth0 netns "$node"
    fi
    ip link set "hpml-v$i" master "$BRIDGE" up
    [[ "$(ip -n "$node" addr show dev eth0)" == *"inet $NET.$((10 + i))/"* ]] || ip -n "$node" addr add "$NET.$((10 + i))/24" dev eth0
    ip -n "$node" link set eth0 up
    ip -n "$node" link set lo up
    grep -q "^$NET.$((10 + i)) $node $TAG" /etc/hosts || echo "$NET.$((10 + i)) $node $TAG" >> /etc/hosts
  done
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_daemons() {
  local node
  alive "$STATE/slurmctld.pid" || slurmctld -f "$CONF"
  if [ "$NODES" -eq 1 ]; then
    alive "$STATE/slurmd.pid" || slurmd -f "$CONF"
    return
  fi
  for node in $(node_names "$NODES"); do
    # nsenter --net, not `ip netns exec`: that remounts /sys, which hides the cgroup mounts slurmd needs.
    # unshare --uts: the node's own hostname, which its tasks (and gloo's address lookup) see.
    alive "$STATE/slurmd-$node.pid" || nsenter --net="/run/netns/$node" unshare --uts \
      sh -c "hostname $node; exec slurmd -f $CONF -N $node"
  done
}

up() {
  need_root; install_packages
  local t0=$EPOCHREALTIME up_nodes
  [ -s "$STATE/layout" ] && [ "$(cat "$STATE/layout")" != "$NODES" ] && down  # another size: start over
  start_munge
  mkdir -p "$STATE"
  echo "$NODES" > "$STATE/layout"
  [ "$NODES" -gt 1 ] && make_network
  # A fresh config only when no controller runs (a running one keeps its jobs).
  alive "$STATE/slurmctld.pid" || write_conf
  start_daemons
  local deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    # up = every node idle, or running jobs (an idempotent `up` while jobs run)
    up_nodes=$(timeout 5 sinfo -h -N -o %T 2>/dev/null | grep -cE '^(idle|mixed|allocated)$' || true)
    if [ "$up_nodes" -ge "$NODES" ]; then
      printf 'local SLURM cluster up in %.1f s: %s\n' "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" \
        "$(sinfo -h -o '%P %D %T %C' | tr '\n' ' ')"
      return 0
    fi
    sleep 0.25
  done
  echo "error: the local SLURM nodes did not become idle; see $STATE/slurmctld.log and $STATE/slurmd*.log" >&2
  exit 1
}

stop_pid() {
  local pid
  [ -s "$1" ] || return 0
  pid=$(cat "$1"); kill "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done  # gone before its state is removed
  rm -f "$1"
}

down() {
  need_root
  local f n made i
  made=$(cat "$STATE/layout" 2>/dev/null || echo 1)
  for f in "$STATE"/slurmd*.pid "$STATE/slurmctld.pid"; do [ -e "$f" ] && stop_pid "$f"; done
  if [ "$made" -gt 1 ]; then
    for i in $(seq 1 "$made"); do
      n=hpml-n$i
      [ -e "/run/netns/$n" ] || continue
      # what still runs in the node (job steps, their tasks) goes with it
      ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
      ip netns del "$n"
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    sed -i "/ $TAG\$/d" /etc/hosts
    rm -rf "${STATE:?}/gpu"
  fi
  rm -rf "${STATE:?}/ctld" "${STATE:?}/d" "${STATE:?}/layout"  # forget the jobs (job ids start again at 1)
  echo "local SLURM cluster stopped (munged left running)"
}

status() {
  local made
  made=$(cat "$STATE/layout" 2>/dev/null || echo 0)
  echo "nodes: $made (from $STATE/layout; 0 = not up)"
  [ "$made" -gt 1 ] && ip netns list | grep '^hpml-n' || true
  sinfo -N -o '%N %T %C %G' || true
  squeue || true
}

node_ns() {  # node_ns NODE: refuse a node this script did not make
  [[ "${1:-}" =~ ^hpml-n[0-9]+$ ]] && [ -e "/run/netns/$1" ] || {
    echo "error: no node '${1:-}' in network namespaces (a multi-node cluster's nodes are hpml-n1 ...; up --nodes 2 first)" >&2
    exit 2; }
}

# tbf needs a bucket (burst) and a queue bound (latency). A small bucket (16 kB) lets little pass at
# the line rate between steps; a long queue (2 s) keeps TCP from dropping, so the rate is the limit.
throttle() {
  need_root; node_ns "$1"
  [[ "${2:-}" =~ ^[0-9.]+[kmgt]?(bit|bps)$ ]] || { echo "error: throttle $1 '${2:-}': give a rate as tc writes it, e.g. 20mbit" >&2; exit 2; }
  tc -n "$1" qdisc replace dev eth0 root tbf rate "$2" burst 16kb latency 2s
  echo "$1: eth0 sends at $2 ($(tc -n "$1" qdisc show dev eth0 | head -1))"
}

unthrottle() {
  need_root; node_ns "$1"
  tc -n "$1" qdisc del dev eth0 root 2>/dev/null || true  # none there: nothing to remove
  echo "$1: eth0 unthrottled"
}

cmd=${1:-}; shift || true
if [ "$cmd" = throttle ] || [ "$cmd" = unthrottle ]; then
  "$cmd" "$@"
  exit 0
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES=${2:?--nodes needs a number}; shift 2 ;;
    --nodes=*) NODES=${1#--nodes=}; shift ;;
    *) echo "usage: $0 up [--nodes N] | down | status | throttle NODE RATE | unthrottle NODE" >&2; exit 2 ;;
  esac
done
[[ "$NODES" =~ ^[1-9][0-9]?$ ]] && [ "$NODES" -le 20 ] || { echo "error: --nodes $NODES: use 1 to 20" >&2; exit 2; }
case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up [--nodes N] | down | status | throttle NODE RATE | unthrottle NODE" >&2; exit 2 ;;
esac

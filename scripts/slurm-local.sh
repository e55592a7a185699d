#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the tests and CI (and for trying
# `collapse sweep slurm` by hand): Debian's slurmctld + slurmd, no systemd, no munge (auth/none).
#
#   scripts/slurm-local.sh start    # start it (idempotent), then print `export SLURM_CONF=...`
#   scripts/slurm-local.sh env      # print that line (eval "$(scripts/slurm-local.sh env)")
#   scripts/slurm-local.sh status   # say whether it runs (exit 0 when it does, 1 when not)
#   scripts/slurm-local.sh stop     # stop it (idempotent); the tests leave it running
#
# Everything (slurm.conf, state, spool, PID files, logs) lives under one folder:
# $COLLAPSE_SLURM_DIR, default ${TMPDIR:-/tmp}/collapse-slurm-$(id -u). The node is `hostname -s`
# with `nproc` CPUs and 90% of MemTotal as RealMemory; the partition is `debug`. The two ports
# (slurmctld, slurmd) are the first free pair from 26817 up, or $COLLAPSE_SLURM_PORT and the next
# one. `start` waits up to $COLLAPSE_SLURM_TIMEOUT seconds (default 60) for the node to be idle.
# Several processes may call `start` at once: a lock file (flock) lets one start the cluster and
# the others find it running. Daemons are stopped by their PID files, never by name.
# When slurmctld/slurmd/sbatch are missing, `start` installs them with apt-get as root, and
# otherwise prints the `sudo apt-get` line and exits 1. Root is needed for nothing else.
set -euo pipefail

DIR="${COLLAPSE_SLURM_DIR:-${TMPDIR:-/tmp}/collapse-slurm-$(id -u)}"
CONF="$DIR/slurm.conf"
TIMEOUT="${COLLAPSE_SLURM_TIMEOUT:-60}"
PKGS="slurmctld slurmd slurm-client"
case "$TIMEOUT" in
  '' | *[!0-9]*)
    echo "slurm-local: COLLAPSE_SLURM_TIMEOUT must be a number of seconds, not '$TIMEOUT'" >&2
    exit 1
    ;;
esac

die() {
  echo "slurm-local: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start|stop|status|env" >&2
  echo "  state folder: $DIR (set COLLAPSE_SLURM_DIR to move it)" >&2
  exit 2
}

# The PID in FILE when that process is alive and is the daemon NAME (so a stale PID file whose
# number was reused by another process never counts, and is never killed).
live_pid() {
  local file=$1 name=$2 pid
  [ -s "$file" ] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
  [ "$(cat "/proc/$pid/comm")" = "$name" ] || return 1
  echo "$pid"
}

running() {
  live_pid "$DIR/slurmctld.pid" slurmctld >/dev/null && live_pid "$DIR/slurmd.pid" slurmd >/dev/null
}

env_line() {
  echo "export SLURM_CONF=$CONF"
}

# Whether something listens on TCP port $1 of this machine.
port_used() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

choose_ports() {
  if [ -n "${COLLAPSE_SLURM_PORT:-}" ]; then
    case "$COLLAPSE_SLURM_PORT" in
      '' | *[!0-9]*) die "COLLAPSE_SLURM_PORT must be a port number, not '$COLLAPSE_SLURM_PORT'" ;;
    esac
    CTLD_PORT=$COLLAPSE_SLURM_PORT
    SLURMD_PORT=$((COLLAPSE_SLURM_PORT + 1))
    for p in "$CTLD_PORT" "$SLURMD_PORT"; do
      port_used "$p" && die "port $p (COLLAPSE_SLURM_PORT=$COLLAPSE_SLURM_PORT) is in use"
    done
    return 0
  fi
  local p
  for ((p = 26817; p < 26817 + 400; p += 2)); do
    if ! port_used "$p" && ! port_used $((p + 1)); then
      CTLD_PORT=$p
      SLURMD_PORT=$((p + 1))
      return 0
    fi
  done
  die "no free pair of ports in 26817-27216; set COLLAPSE_SLURM_PORT"
}

ensure_packages() {
  local cmd missing=""
  for cmd in slurmctld slurmd sbatch sinfo squeue scancel; do
    command -v "$cmd" >/dev/null 2>&1 || missing=1
  done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "slurm-local: installing Debian packages: $PKGS" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends $PKGS >/dev/null ||
      die "apt-get install $PKGS failed"
  else
    die "Slurm is not installed and this is not root; run: sudo apt-get install -y --no-install-recommends $PKGS"
  fi
}

write_conf() {
  local host cpus mem_kb mem_mb
  host=$(hostname -s)
  cpus=$(nproc)
  mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  [ -n "$mem_kb" ] || die "cannot read MemTotal from /proc/meminfo"
  mem_mb=$((mem_kb / 1024 * 9 / 10))
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh start; every path is under $DIR.
ClusterName=collapse-local
SlurmctldHost=$host
AuthType=auth/none
CredType=cred/none
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
# Finished jobs stay visible to \`squeue -t all\` for 10 minutes (there is no accounting).
MinJobAge=600
# Cancelled tasks get SIGKILL 2 s after SIGTERM (default 30 s).
KillWait=2
# Start the next array tasks as soon as others end (defaults wait up to 3 s between waves).
SchedulerParameters=batch_sched_delay=0,sched_interval=1
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

log_tail() {
  local f
  for f in "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log"; do
    [ -f "$f" ] && { echo "--- last lines of $f:"; tail -n 15 "$f"; }
  done >&2
}

stop_daemons() {
  local name pid t
  for name in slurmd slurmctld; do
    if pid=$(live_pid "$DIR/$name.pid" "$name"); then
      kill "$pid" 2>/dev/null || true
      for ((t = 0; t < 100; t++)); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
      done
      if [ -d "/proc/$pid" ]; then
        kill -9 "$pid" 2>/dev/null || true
      fi
    fi
    rm -f "$DIR/$name.pid"
  done
}

node_idle() {
  [ "$(SLURM_CONF=$CONF sinfo -h -N -o '%t' 2>/dev/null | head -n 1)" = idle ]
}

start() {
  ensure_packages
  mkdir -p "$DIR"
  exec 9>"$DIR/start.lock"
  flock -w $((TIMEOUT + 30)) 9 || die "another start holds $DIR/start.lock for over $((TIMEOUT + 30)) s"
  if running && node_idle_or_busy; then
    env_line
    return 0
  fi
  stop_daemons # a half-started or dead cluster: start afresh
  choose_ports
  write_conf
  slurmctld -c -f "$CONF" || { log_tail; die "slurmctld failed to start (logs in $DIR/log)"; }
  slurmd -f "$CONF" || { log_tail; stop_daemons; die "slurmd failed to start (logs in $DIR/log)"; }
  local t
  for ((t = 0; t < TIMEOUT * 5; t++)); do
    if running && node_idle; then
      env_line
      return 0
    fi
    sleep 0.2
  done
  log_tail
  stop_daemons
  die "the node did not become idle within $TIMEOUT s (logs in $DIR/log; COLLAPSE_SLURM_TIMEOUT raises the limit)"
}

# Whether the running cluster answers: its node idle, or busy with jobs (mix/alloc).
node_idle_or_busy() {
  case "$(SLURM_CONF=$CONF sinfo -h -N -o '%t' 2>/dev/null | head -n 1)" in
    idle | mix | alloc | comp) return 0 ;;
    *) return 1 ;;
  esac
}

[ $# = 1 ] || usage
case "$1" in
  start) start ;;
  stop)
    if [ -d "$DIR" ]; then
      exec 9>"$DIR/start.lock"
      flock -w $((TIMEOUT + 30)) 9 || die "a start holds $DIR/start.lock"
      stop_daemons
    fi
    echo "slurm-local: stopped (state folder $DIR)"
    ;;
  status)
    if running; then
      echo "slurm-local: running ($(env_line); node $(SLURM_CONF=$CONF sinfo -h -N -o '%N %t' 2>/dev/null || echo 'not answering'))"
    else
      echo "slurm-local: not running (state folder $DIR)"
      exit 1
    fi
    ;;
  env) env_line ;;
  *) usage ;;
esac

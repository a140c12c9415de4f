#!/usr/bin/env bash
# End-to-end test of `mtp-exp sweep --emit-slurm`: starts a private single-node
# Slurm cluster (its own munged, slurmctld and slurmd, all state under
# SCRATCH_DIR, on ports picked at run time), submits the emitted array script,
# and checks the sweep folder, the array tasks' output and `mtp-exp report`.
#
# Usage: run_slurm_test.sh MTP_EXP_BINARY SCRATCH_DIR
# Exit:  0 pass, 1 fail, 77 skipped (Slurm/munge missing, not root, or the
#        private cluster cannot be started for a reason outside the project).
# Env:   MTP_SLURM_TEST_KEEP=1 keeps the work folder after a pass (it is always
#        kept after a failure or a skip).
# shellcheck disable=SC2317  # cleanup and its helpers run from a trap
set -eEuo pipefail

readonly EXIT_PASS=0 EXIT_FAIL=1 EXIT_SKIP=77
readonly NODE_TIMEOUT=30 JOB_TIMEOUT=120 SHUTDOWN_TIMEOUT=15

T0=$(date +%s%N)
elapsed() {
  local ds=$((($(date +%s%N) - T0) / 100000000))
  echo "$((ds / 10)).$((ds % 10))"
}
log() { printf 'slurm-test: [%5ss] %s\n' "$(elapsed)" "$*"; }

if [[ $# -ne 2 ]]; then
  echo "usage: $0 MTP_EXP_BINARY SCRATCH_DIR" >&2
  exit "$EXIT_FAIL"
fi

# The state the EXIT trap needs; set before anything can fail.
WORK="" RUNDIR="" RUNDIR_IS_SEPARATE=0 OUTCOME="" DAEMON_PIDS=() MUNGED_PID="" CTLD_PID=""
# Every process of this cluster (daemons, slurmstepd, the job's own processes)
# inherits this variable, so cleanup can find them all by pid, and only them.
readonly TAG_VAR=MTP_SLURM_TEST_TAG
TAG="$$-$RANDOM-$(date +%s%N)"

skip() {
  OUTCOME=skip
  echo "SKIPPED: $*"
  exit "$EXIT_SKIP"
}

fail() {
  OUTCOME=fail
  echo "FAIL: $*" >&2
  if [[ -n $WORK ]]; then
    diagnostics >&2
    echo "FAIL: $*" >&2  # again, so that it is the last line, after the diagnostics
  fi
  exit "$EXIT_FAIL"
}

tail_file() {
  local f=$1 n=${2:-25}
  [[ -f $f ]] || return 0
  echo "----- tail -n $n $f"
  tail -n "$n" "$f"
}

diagnostics() {
  [[ -n $WORK ]] || return 0
  echo "----- diagnostics (work folder kept: $WORK)"
  if [[ -n ${SLURM_CONF:-} && -f ${SLURM_CONF:-} ]]; then
    echo "----- sinfo"; timeout 5 sinfo -N -l 2>&1 || true
    echo "----- squeue"; timeout 5 squeue 2>&1 || true
    if [[ -n ${JOB_ID:-} ]]; then
      echo "----- scontrol show job $JOB_ID"; timeout 5 scontrol show job "$JOB_ID" 2>&1 || true
    fi
  fi
  tail_file "$WORK/log/slurmctld.log" 40
  tail_file "$WORK/log/slurmd.log" 40
  # stderr repeats the log, but holds what a daemon said before it opened it.
  [[ -s $WORK/log/slurmctld.log ]] || tail_file "$WORK/log/slurmctld.stderr" 10
  [[ -s $WORK/log/slurmd.log ]] || tail_file "$WORK/log/slurmd.stderr" 10
  tail_file "$WORK/log/munged.log" 10
  local f
  for f in "$WORK"/sweep/slurm-*.out; do
    [[ -e $f ]] && tail_file "$f" 20
  done
  return 0
}

# Pids of live processes whose environment carries this run's tag; never our own.
tagged_pids() {
  local d pid
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    grep -qzx -- "$TAG_VAR=$TAG" "$d/environ" 2>/dev/null && echo "$pid"
  done
  return 0
}

alive() { kill -0 "$1" 2>/dev/null; }

# Waits until none of the given pids is alive; returns 1 on timeout.
wait_gone() {
  local deadline=$((SECONDS + $1)) pid any
  shift
  while :; do
    any=0
    for pid in "$@"; do alive "$pid" && any=1; done
    ((any)) || return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

stop_daemons() {
  local pids pid
  if ((${#DAEMON_PIDS[@]})); then
    # A clean shutdown first; but only through our own live slurmctld: after a
    # port clash, the port belongs to someone else.
    if [[ -n $CTLD_PID ]] && alive "$CTLD_PID"; then
      timeout 10 scontrol shutdown >/dev/null 2>&1 || true
    fi
    wait_gone "$SHUTDOWN_TIMEOUT" "${DAEMON_PIDS[@]}" || kill -TERM "${DAEMON_PIDS[@]}" 2>/dev/null || true
    wait_gone 5 "${DAEMON_PIDS[@]}" || kill -KILL "${DAEMON_PIDS[@]}" 2>/dev/null || true
    DAEMON_PIDS=() CTLD_PID=""
  fi
  # Leftovers: slurmstepd and job processes (they are not our children), pids
  # from pid files of a daemon that daemonised anyway.
  mapfile -t pids < <(tagged_pids)
  for pid in "$WORK"/run/*.pid; do
    [[ -f $pid ]] || continue
    pid=$(<"$pid")
    [[ $pid =~ ^[0-9]+$ && $pid != "$MUNGED_PID" ]] && alive "$pid" &&
      grep -qzx -- "$TAG_VAR=$TAG" "/proc/$pid/environ" 2>/dev/null && pids+=("$pid")
  done
  # munged outlives a retry with other ports; stop_munged ends it last.
  mapfile -t pids < <(printf '%s\n' "${pids[@]}" | grep -Ev "^(${MUNGED_PID:-x})?\$" | sort -u)
  if ((${#pids[@]})); then
    # slurmstepd outlives a SIGTERM for a while; a throwaway cluster need not wait.
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait_gone 2 "${pids[@]}" || kill -KILL "${pids[@]}" 2>/dev/null || true
    wait_gone 5 "${pids[@]}" || true
  fi
}

stop_munged() {
  [[ -n $MUNGED_PID ]] || return 0
  kill -TERM "$MUNGED_PID" 2>/dev/null || true
  wait_gone 5 "$MUNGED_PID" || kill -KILL "$MUNGED_PID" 2>/dev/null || true
  wait_gone 5 "$MUNGED_PID" || true
  MUNGED_PID=""
}

cleanup() {
  local rc=$?
  # A second Ctrl-C must not cut the teardown short; it takes seconds.
  trap - EXIT ERR
  trap '' INT TERM
  set +e
  if [[ -n $WORK ]]; then
    stop_daemons
    stop_munged
    local left
    left=$(tagged_pids | tr '\n' ' ')
    if [[ -n $left ]]; then
      echo "slurm-test: processes left behind: $left" >&2
      # A pass that leaks processes is not a pass.
      ((rc == EXIT_PASS)) && rc=$EXIT_FAIL
    fi
    if [[ $OUTCOME == pass && ${MTP_SLURM_TEST_KEEP:-0} != 1 ]]; then
      rm -rf "$WORK"
    fi
    ((RUNDIR_IS_SEPARATE)) && rm -rf "$RUNDIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
# A command failing under set -e would otherwise end the test without a word.
# (-E: in functions too; not in subshells, whose failure the caller sees.)
trap '[[ $BASHPID != "$$" ]] || fail "unexpected error (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
trap 'echo "slurm-test: interrupted" >&2; exit 130' INT
trap 'echo "slurm-test: terminated" >&2; exit 143' TERM

# ---------------------------------------------------------------- preconditions
MTP_EXP=$1
SCRATCH_DIR=$2
[[ -x $MTP_EXP && -f $MTP_EXP ]] || fail "MTP_EXP_BINARY '$MTP_EXP' is not an executable file"
MTP_EXP=$(realpath "$MTP_EXP")

# The daemons live in sbin, which a non-login PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
# Run inside a Slurm job (a CI runner may be one), SLURM_*/SBATCH_* variables
# would steer sbatch and the output formats of squeue and sinfo.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(SLURM|SBATCH|SQUEUE|SINFO|SCONTROL|SALLOC|SRUN)_' || true)
missing=()
for tool in munged slurmctld slurmd sbatch scontrol squeue sinfo; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
((${#missing[@]} == 0)) || skip "not installed: ${missing[*]} (Debian: apt-get install slurmctld slurmd munge slurm-client)"
# slurmd can only start job steps as other users, and read its node's
# resources, with root's rights; an unprivileged cluster is not supported.
[[ $(id -u) == 0 ]] || skip "must run as root to start slurmd (running as $(id -un))"

# slurm.conf values cannot hold whitespace.
[[ $SCRATCH_DIR != *[[:space:]]* ]] || fail "SCRATCH_DIR '$SCRATCH_DIR' contains whitespace"
mkdir -p "$SCRATCH_DIR"
# A fresh folder per run, so a rerun, or a second copy running at the same
# time on the same SCRATCH_DIR, starts from a clean state.
WORK=$(mktemp -d "$(realpath "$SCRATCH_DIR")/slurm-test.XXXXXX")
chmod 755 "$WORK"
mkdir -p "$WORK"/{etc,state,log,run}
log "work folder $WORK ($(slurmctld -V 2>&1), $(munged -V 2>&1 | cut -d' ' -f1))"

# Unix sockets (munged's, and slurmstepd's in SlurmdSpoolDir) are limited to
# 107 bytes of path; a deep SCRATCH_DIR gets a short folder in /tmp for them.
NODE=$(uname -n)
NODE=${NODE%%.*}  # slurmctld and slurmd match it against the short hostname
if ((${#WORK} + ${#NODE} > 60)); then
  RUNDIR=$(mktemp -d /tmp/mtp-slurm.XXXXXX)
  RUNDIR_IS_SEPARATE=1
  log "work folder path too long for Unix sockets: munged's and slurmd's sockets go to $RUNDIR"
else
  RUNDIR=$WORK/sock
  mkdir -p "$RUNDIR"
fi
chmod 700 "$RUNDIR"
mkdir -p "$RUNDIR/spool"

# ---------------------------------------------------------------------- munged
# munged refuses a socket folder that is not searchable by everyone (our
# SCRATCH_DIR may well be 0700) unless --force; only root talks to it here.
# In the foreground it logs to stderr and writes no pid file; the file flags
# still keep it off the system's defaults in /run/munge and /var/log/munge.
(umask 077 && head -c 1024 /dev/urandom >"$RUNDIR/munge.key")
MUNGE_SOCKET=$RUNDIR/munge.sock
env "$TAG_VAR=$TAG" munged --foreground --force --socket="$MUNGE_SOCKET" \
  --key-file="$RUNDIR/munge.key" --pid-file="$WORK/run/munged.pid" \
  --log-file="$WORK/log/munged.log" --seed-file="$RUNDIR/munged.seed" \
  >>"$WORK/log/munged.log" 2>&1 &
MUNGED_PID=$!
deadline=$((SECONDS + 10))
until [[ -S $MUNGE_SOCKET ]]; do
  alive "$MUNGED_PID" || skip "munged exited at start: $(tail -n 1 "$WORK/log/munged.log")"
  ((SECONDS < deadline)) || skip "munged did not create its socket within 10 s"
  sleep 0.1
done
if command -v munge >/dev/null && command -v unmunge >/dev/null; then
  munge -S "$MUNGE_SOCKET" -n | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 ||
    skip "munged is up but a munge/unmunge round trip fails"
fi
log "munged up (pid $MUNGED_PID)"

# ------------------------------------------------------------------ slurm.conf
export SLURM_CONF=$WORK/etc/slurm.conf
: >"$WORK/etc/plugstack.conf"  # no site SPANK plugins from /etc/slurm
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys those
MEM_MB=$(awk '/^MemTotal:/ { print int($2 / 1024 / 2) }' /proc/meminfo)  # half: never above what slurmd finds
((MEM_MB >= 1)) || MEM_MB=1

# Free TCP ports, outside the kernel's ephemeral range (so an outgoing
# connection cannot take one between our pick and the daemon's bind), and not
# in use now. A second copy of this test may still pick the same port in the
# same instant: a daemon failing to bind makes us pick again.
used_ports() {
  local _ addr
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | while read -r _ addr _; do
    [[ $addr == *:* ]] && echo "$((16#${addr##*:}))"
  done
  return 0
}
pick_port() {
  local used=$1 p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    grep -qx "$p" <<<"$used" || { echo "$p"; return 0; }
  done
  return 1
}

write_conf() {
  cat >"$SLURM_CONF" <<EOF
# Private single-node cluster of run_slurm_test.sh; nothing here is shared.
ClusterName=mtptest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$RUNDIR/spool
SlurmctldPidFile=$WORK/run/slurmctld.pid
SlurmdPidFile=$WORK/run/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
LogTimeFormat=iso8601_ms
PlugStackConfig=$WORK/etc/plugstack.conf
# No cgroups, no accounting: works in a container without systemd.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
# CR_CPU (not cores): two 1-cpu array tasks fit on a 2-cpu node at once.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
ReturnToService=2
MailProg=/bin/true
MinJobAge=300
KillWait=5
InactiveLimit=0
NodeName=$NODE NodeHostname=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=test Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

# Starts a daemon in the foreground (so $! is its pid), tagged.
start_daemon() {
  local name=$1
  shift
  env "$TAG_VAR=$TAG" SLURM_CONF="$SLURM_CONF" "$name" -D -f "$SLURM_CONF" "$@" \
    >"$WORK/log/$name.stderr" 2>&1 &
  DAEMON_PIDS+=($!)
  LAST_PID=$!
}

port_clash() { grep -qsi 'address already in use' "$WORK/log/$1.log" "$WORK/log/$1.stderr"; }
# The last fatal line, else the last error that is not slurmd's harmless
# complaint about the PMIx library it loads whatever MpiDefault says.
last_error() {
  local files=("$WORK/log/$1.log" "$WORK/log/$1.stderr") line
  line=$(grep -hsi 'fatal' "${files[@]}" | tail -n 1 || true)
  [[ -n $line ]] || line=$(grep -hsi 'error' "${files[@]}" | grep -vi 'pmix' | tail -n 1 || true)
  echo "${line:-no error in its log}"
}

started=0
for attempt in 1 2 3; do
  used=$(used_ports)
  if ! CTLD_PORT=$(pick_port "$used") || ! SLURMD_PORT=$(pick_port "$used"$'\n'"$CTLD_PORT"); then
    skip "found no free TCP port in 20000-31999"
  fi
  write_conf
  rm -f "$WORK"/log/slurm*.log "$WORK"/log/slurm*.stderr

  start_daemon slurmctld -c -i
  CTLD_PID=$LAST_PID
  deadline=$((SECONDS + 20))
  until timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; do
    if ! alive "$CTLD_PID"; then
      port_clash slurmctld && break
      skip "slurmctld exited at start: $(last_error slurmctld)"
    fi
    ((SECONDS < deadline)) || skip "slurmctld did not answer scontrol ping within 20 s: $(last_error slurmctld)"
    sleep 0.2
  done
  if alive "$CTLD_PID"; then
    start_daemon slurmd -N "$NODE"
    slurmd_pid=$LAST_PID
    # slurmd binds its port within a moment of starting; a clash ends it.
    deadline=$((SECONDS + 3))
    while alive "$slurmd_pid" && ((SECONDS < deadline)); do
      grep -qs 'slurmd started' "$WORK/log/slurmd.log" && break
      sleep 0.2
    done
    if alive "$slurmd_pid"; then
      started=1
      break
    fi
    port_clash slurmd || skip "slurmd exited at start: $(last_error slurmd)"
  fi
  log "port clash on attempt $attempt (ports $CTLD_PORT, $SLURMD_PORT); picking others"
  stop_daemons
done
((started)) || skip "daemons could not bind a free port in 3 attempts"
log "slurmctld (port $CTLD_PORT) and slurmd (port $SLURMD_PORT) up; node $NODE, $CPUS cpus, RealMemory=$MEM_MB"

# ------------------------------------------------------------ wait: node idle
deadline=$((SECONDS + NODE_TIMEOUT))
while :; do
  state=$(timeout 5 sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n 1 || true)
  [[ $state == idle ]] && break
  # Unlike down (not registered yet), these do not pass on their own.
  [[ $state == inval* || $state == drain* || $state == fail* ]] &&
    skip "node $NODE is $state: $(sinfo -h -n "$NODE" -o '%E' 2>/dev/null)"
  alive "$slurmd_pid" || skip "slurmd exited before the node became idle: $(last_error slurmd)"
  ((SECONDS < deadline)) || skip "node $NODE not idle after ${NODE_TIMEOUT} s (state '$state', reason '$(sinfo -h -n "$NODE" -o '%E' 2>/dev/null)')"
  sleep 0.3
done
log "node $NODE idle"

# ------------------------------------------------------------- emit and submit
SWEEP=$WORK/sweep
SCRIPT=$WORK/sweep.sbatch
TASKS=2
cd "$WORK"  # the emitted script cds to the folder it was emitted in
"$MTP_EXP" sweep --grid "perspectives=1,2;seed=0,1" --task lag-recall --steps 4 --batch 2 \
  --seq-len 24 --lags 1,4 --width 8 --layers 1 --val-batches 1 --out "$SWEEP" \
  --emit-slurm "$SCRIPT" --slurm-tasks "$TASKS" --slurm-cpus 1 >"$WORK/log/emit.out" 2>&1 ||
  fail "mtp-exp sweep --emit-slurm exited $?: $(tail -n 1 "$WORK/log/emit.out")"
[[ -f $SCRIPT ]] || fail "mtp-exp sweep --emit-slurm wrote no $SCRIPT"
grep -q '^#SBATCH --array=0-1$' "$SCRIPT" || fail "$SCRIPT has no '#SBATCH --array=0-1' line"

sbatch_out=$(env "$TAG_VAR=$TAG" sbatch --parsable "$SCRIPT" 2>&1) ||
  fail "sbatch rejected $SCRIPT: $sbatch_out"
JOB_ID=${sbatch_out%%;*}
[[ $JOB_ID =~ ^[0-9]+$ ]] || fail "sbatch --parsable printed '$sbatch_out', not a job id"
log "submitted $SCRIPT as job $JOB_ID"

# ---------------------------------------------------------- wait: job finished
# Without accounting there is no sacct; scontrol keeps finished array tasks for
# MinJobAge seconds, with their final state.
deadline=$((SECONDS + JOB_TIMEOUT))
while :; do
  job=$(timeout 5 scontrol -o show job "$JOB_ID" 2>&1 || true)
  # A busy slurmctld may time out an RPC now and then: retry until the deadline.
  if grep -q 'JobState=' <<<"$job" &&
    ! grep -Eq 'JobState=(PENDING|CONFIGURING|RUNNING|COMPLETING|SUSPENDED|REQUEUED|RESIZING|SIGNALING|STAGE_OUT)' <<<"$job"; then
    break
  fi
  ((SECONDS < deadline)) || fail "job $JOB_ID not finished after ${JOB_TIMEOUT} s (scontrol: $(head -c 300 <<<"$job"))"
  sleep 0.3
done
tasks_done=$(grep -o 'ArrayTaskId=[0-9]* .*JobState=[A-Z_]*' <<<"$job" |
  sed -E 's/ArrayTaskId=([0-9]+) .*JobState=([A-Z_]+)/\1 \2/' | sort -n | tr '\n' ' ' || true)
log "job $JOB_ID finished: tasks (id state) $tasks_done"

# ----------------------------------------------------------------------- checks
[[ $tasks_done == "0 COMPLETED 1 COMPLETED " ]] ||
  fail "array tasks did not both complete: $tasks_done"
grep -Eq 'ExitCode=([1-9]|0:[1-9])' <<<"$job" && fail "an array task has a non-zero exit code or signal"

for run in perspectives-1_seed-0 perspectives-1_seed-1 perspectives-2_seed-0 perspectives-2_seed-1; do
  [[ -s $SWEEP/runs/$run/result.json ]] || fail "no $SWEEP/runs/$run/result.json"
done

for i in 0 1; do
  out=$SWEEP/slurm-${JOB_ID}_$i.out
  [[ -f $out ]] || fail "array task $i wrote no $out"
  grep -q "shard $i/$TASKS: 2)" "$out" || fail "$out does not show shard $i/$TASKS running 2 runs"
  grep -q '^sweep: finished' "$out" || fail "$out does not end with 'sweep: finished'"
  grep -Eq ' [1-9][0-9]* failed' "$out" && fail "$out reports failed runs"
done
log "4 result.json files; slurm-${JOB_ID}_0.out and _1.out show shards 0/2 and 1/2"

# Both tasks held their allocation at once: slurmctld allocated the second
# before it logged the first one's completion (one log, so one clock).
if ((CPUS >= 2)); then
  ctld_log=$WORK/log/slurmctld.log
  # Lines look like "sched: Allocate JobId=7_1(8) NodeList=...".
  alloc_last=$(grep -En "Allocate JobId=${JOB_ID}_[01][( ]" "$ctld_log" | tail -n 1 | cut -d: -f1 || true)
  done_first=$(grep -En "_job_complete: JobId=${JOB_ID}_[01][( ]" "$ctld_log" | head -n 1 | cut -d: -f1 || true)
  allocs=$(grep -Ec "Allocate JobId=${JOB_ID}_[01][( ]" "$ctld_log" || true)
  [[ $allocs == 2 && -n $done_first ]] ||
    fail "cannot tell from $ctld_log whether the tasks overlapped (no Allocate/_job_complete lines)"
  ((alloc_last < done_first)) ||
    fail "array tasks ran one after the other on a $CPUS-cpu node (slurmctld.log lines $alloc_last, $done_first)"
  log "the two array tasks ran concurrently"
else
  log "1 cpu: not checking that the array tasks overlap"
fi

"$MTP_EXP" report "$SWEEP" >"$WORK/log/report.out" 2>&1 ||
  fail "mtp-exp report exited $?: $(tail -n 1 "$WORK/log/report.out")"
[[ -f $SWEEP/REPORT.md ]] || fail "mtp-exp report wrote no $SWEEP/REPORT.md"
grep -Eq '^4 finished runs in [0-9]+ configurations;' "$SWEEP/REPORT.md" ||
  fail "REPORT.md does not say '4 finished runs' (got: $(grep -m1 'finished runs' "$SWEEP/REPORT.md"))"
log "mtp-exp report: 4 finished runs"

OUTCOME=pass
log "PASSED"
exit "$EXIT_PASS"

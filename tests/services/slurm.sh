#!/usr/bin/env bash
# A single-node SLURM cluster for the tests: munged, slurmctld and slurmd of Debian's slurm-wlm,
# run as root with all their state in one folder, on free ports and a private munge socket (so
# that several clusters can run side by side on one machine and none touches /etc).
#
#   bash tests/services/slurm.sh start DIR   # installs slurm-wlm + munge if missing, starts, waits for the node
#   bash tests/services/slurm.sh stop DIR    # stops the daemons started from DIR, removes DIR
#   bash tests/services/slurm.sh env DIR     # prints SLURM_CONF=... for the tests
#
# When the machine cannot install it (not root, no apt-get, the package cannot be installed), `start`
# writes DIR/unavailable with one line saying why and exits 0: the SLURM tests then skip with that
# line. A daemon that does not start is an error (exit status 1): the SLURM tests then fail.
set -uo pipefail

cmd=${1:?usage: slurm.sh start|stop|env DIR}
dir=${2:?usage: slurm.sh start|stop|env DIR}

unavailable() {
    mkdir -p "$dir"
    echo "$1" > "$dir/unavailable"
    echo "slurm.sh: $1" >&2
    exit 0
}

fail() {  # a daemon did not start: stop the others, keep the logs, exit 1
    echo "slurm.sh: $1" >&2
    stop_daemons
    exit 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {  # wait_for SECONDS COMMAND...: until the command succeeds
    local limit=$1; shift
    local t=0
    until "$@" > /dev/null 2>&1; do
        sleep 0.5; t=$((t + 1))
        if [ "$t" -ge $((limit * 2)) ]; then return 1; fi
    done
}

install_packages() {
    if command -v sbatch > /dev/null && command -v slurmctld > /dev/null && command -v munged > /dev/null; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        unavailable "slurm-wlm is not installed and installing it needs root (apt-get install slurm-wlm munge)"
    fi
    if ! command -v apt-get > /dev/null; then
        unavailable "slurm-wlm is not installed and this machine has no apt-get to install it"
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } \
            > "$dir/apt.log" 2>&1; then
        unavailable "apt-get could not install slurm-wlm and munge (see $dir/apt.log: $(tail -n 1 "$dir/apt.log"))"
    fi
}

start() {
    mkdir -p "$dir"
    rm -f "$dir/unavailable"
    install_packages
    if [ "$(id -u)" != 0 ]; then
        unavailable "the test SLURM runs its daemons as root; run the tests as root"
    fi
    dir=$(cd "$dir" && pwd)
    mkdir -p "$dir/state" "$dir/spool" "$dir/log"
    # munged runs as user munge: its folder (key, socket, log) lies where that user can reach it,
    # whatever the permissions of DIR's parents
    local munge
    munge=$(mktemp -d /tmp/smd-munge.XXXXXX)
    echo "$munge" > "$dir/munge_dir"
    chown munge: "$munge" && chmod 755 "$munge"  # the socket lives here: others need to reach it
    # a key of our own: this cluster trusts nothing else on the machine
    dd if=/dev/urandom bs=1 count=1024 of="$munge/munge.key" status=none
    chown munge: "$munge/munge.key" && chmod 400 "$munge/munge.key"
    runuser -u munge -- munged --socket="$munge/munge.sock" --key-file="$munge/munge.key" \
        --pid-file="$munge/munged.pid" --log-file="$munge/munged.log" \
        --seed-file="$munge/munged.seed" || fail "munged did not start (see $munge/munged.log)"

    local host cpus ctld_port d_port
    host=$(hostname -s)
    cpus=$(nproc)
    ctld_port=$(free_port)
    d_port=$(free_port)
    cat > "$dir/slurm.conf" <<EOF
ClusterName=smdtest
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge/munge.sock
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MinJobAge=3600
MaxArraySize=10001
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmdParameters=config_overrides
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=upex Nodes=$host MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start (see $dir/log/slurmctld.log)"
    slurmd -f "$SLURM_CONF" || fail "slurmd did not start (see $dir/log/slurmd.log)"
    if ! wait_for 30 bash -c "sinfo -h -N -o '%T' | grep -Eq '^(idle|mixed|allocated)'"; then
        fail "the SLURM node did not come up within 30 s (see $dir/log/slurmctld.log, $dir/log/slurmd.log)"
    fi
    echo "SLURM_CONF=$SLURM_CONF"
}

stop_pidfile() {  # stop_pidfile FILE: ends the process named in FILE and waits for it
    local file=$1 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file" 2> /dev/null) || return 0
    [ -n "$pid" ] || return 0
    kill "$pid" 2> /dev/null || return 0
    for _ in $(seq 1 40); do
        kill -0 "$pid" 2> /dev/null || return 0
        sleep 0.25
    done
    kill -9 "$pid" 2> /dev/null
}

stop_daemons() {
    if [ -f "$dir/slurm.conf" ]; then
        SLURM_CONF="$dir/slurm.conf" scancel --full --quiet --user="$(id -un)" 2> /dev/null
    fi
    stop_pidfile "$dir/slurmd.pid"
    stop_pidfile "$dir/slurmctld.pid"
    if [ -f "$dir/munge_dir" ]; then
        local munge
        munge=$(cat "$dir/munge_dir")
        stop_pidfile "$munge/munged.pid"
    fi
}

stop() {
    [ -d "$dir" ] || return 0
    stop_daemons
    if [ -f "$dir/munge_dir" ]; then
        local munge
        munge=$(cat "$dir/munge_dir")
        case "$munge" in /tmp/smd-munge.*) rm -rf "$munge" ;; esac
    fi
    rm -rf "$dir"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    env) [ -f "$dir/slurm.conf" ] && echo "SLURM_CONF=$dir/slurm.conf" ;;
    *) echo "usage: slurm.sh start|stop|env DIR" >&2; exit 2 ;;
esac

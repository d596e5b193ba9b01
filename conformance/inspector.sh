#!/bin/sh
# The conformance inspector: copied into each test rootfs as /inspect and run as the
# container's process. It prints, one fact per line ("section key value..."), everything
# the runtime controls, so that the runner can check it against config.json and diff the
# reports of two runtimes. Host-specific details (mount ids, device numbers of backing
# filesystems, pipe inode numbers, host-only paths) are dropped here; the runner
# normalises the rest (container id, bundle path, namespace inodes vs the host's).
#
# Only busybox applets and shell builtins are used. Facts about the init are read by
# the shell itself (builtins on /proc/self), or by forked children for what fork and
# exec do not change: a child is another process, and an init that gained capabilities
# at execve is not dumpable, so its children may not read its /proc/1/{environ,fd}.
#
# /inspect.conf (written by the runner) lists extra probes: "probe PATH" for masked and
# read-only paths, "node PATH" for device nodes outside /dev, "sysctl KEY" for sysctls,
# "netdev NAME" for network interfaces the config moves in.
# Nothing here changes anything: probes open for writing but never write.

PID1=$$
CONF=/inspect.conf

section_pid1() {
    # PID 1 identity: the process the runtime exec'd is the init of its PID namespace.
    echo "pid1 shell_pid $PID1"
    cmdline=
    while IFS= read -r -d '' arg; do cmdline="$cmdline$arg "; done </proc/self/cmdline
    echo "pid1 cmdline $cmdline"
}

section_args() {
    # args exactly as exec'd, one per line so spaces inside an argument stay visible.
    i=0
    while IFS= read -r -d '' arg; do
        echo "args $i $arg"
        i=$((i + 1))
    done </proc/self/cmdline
}

section_fds() {
    # Open fds of the init, by kind. Everything runs in this very process (a function,
    # no command substitution: a subshell would have a pipe on fd 1 and would not have
    # the shell's script fd): the glob's own directory fd is closed by the time the loop
    # runs, so it fails -e.
    for path in /proc/self/fd/*; do
        [ -e "$path" ] || continue
        printf 'fd %s ' "${path##*/}"
        fd_kind "$path"
    done
}

fd_kind() {
    if [ "$1" -ef /inspect ]; then echo script
    elif [ -p "$1" ]; then echo pipe
    elif [ -S "$1" ]; then echo socket
    elif [ -f "$1" ]; then echo file
    elif [ -c "$1" ]; then
        # A child's /proc/self/fd/N is the same open file (fds are inherited).
        printf 'chardev '
        stat -L -c '%t:%T' "$1"
    elif [ -d "$1" ]; then echo dir
    else echo other
    fi
}

section_ns() {
    # Inode numbers; the runner turns them into host/new/joined.
    ls -l /proc/self/ns/ | while read -r _ _ _ _ _ _ _ _ name _ target; do
        [ -n "$name" ] || continue
        inode=${target#*[}
        echo "ns $name ${inode%]}"
    done
}

section_status() {
    # Credentials, umask, capabilities, no_new_privs and seccomp of the init (a builtin
    # read loop: no fork, so /proc/self is PID 1).
    while IFS= read -r line; do
        key=${line%%:*}
        value=$(echo ${line#*:})
        case "$key" in
        Uid | Gid | Groups | Umask | CapInh | CapPrm | CapEff | CapBnd | CapAmb | NoNewPrivs | Seccomp | PPid | \
        Cpus_allowed_list)
            echo "status $key $value" ;;
        esac
    done </proc/self/status
}

section_limits() {
    # "rlimit Max_open_files SOFT HARD": the columns of /proc/PID/limits are fixed-width.
    awk 'NR > 1 {
        name = substr($0, 1, 26); soft = substr($0, 27, 21); hard = substr($0, 48, 21)
        gsub(/ +$/, "", name); gsub(/ /, "_", name); gsub(/ /, "", soft); gsub(/ /, "", hard)
        print "rlimit " name " " soft " " hard
    }' /proc/self/limits
}

section_misc() {
    read -r oom </proc/self/oom_score_adj
    echo "oom_score_adj $oom"
    echo "uts hostname $(cat /proc/sys/kernel/hostname)"
    echo "uts domainname $(cat /proc/sys/kernel/domainname)"
    # Not `pwd -P`: that is getcwd(2), which a seccomp profile may refuse.
    echo "cwd $(readlink /proc/self/cwd)"
    # Seconds since boot, through the time namespace's boottime offset if any.
    read -r uptime _ </proc/uptime
    echo "clock uptime $uptime"
}

section_env() {
    # The environment as exec'd (not as the shell re-exported it), sorted. The loop runs
    # in a forked subshell, whose /proc/self/environ is the same memory.
    while IFS= read -r -d '' entry; do
        echo "env $entry"
    done </proc/self/environ | sort
}

section_cgroup() {
    # "cgroup CONTROLLERS PATH"; the runner replaces the container's own path.
    while IFS=: read -r _ controllers path; do
        echo "cgroup ${controllers:-unified} $path"
    done </proc/self/cgroup
}

section_mounts() {
    # "mount POINT FSTYPE OPTIONS PROPAGATION SOURCE SUPEROPTS ROOT"; ids, major:minor and
    # peer-group numbers are host details and dropped.
    awk '{
        prop = ""
        for (i = 7; $i != "-"; i++) {
            split($i, kv, ":")
            p = kv[1] == "master" ? "slave" : kv[1]
            if (p != "propagate_from") prop = prop (prop == "" ? "" : ",") p
        }
        if (prop == "") prop = "private"
        fstype = $(i + 1); source = $(i + 2); super = $(i + 3)
        if (source ~ /^\/dev\//) source = "<blockdev>"
        print "mount " $5 " " fstype " " $6 " " prop " " source " " super " " $4
    }' /proc/self/mountinfo
}

section_dev() {
    # Every entry of the /dev filesystem itself (not of pts, shm, mqueue mounted on it).
    find /dev -xdev | sort | while IFS= read -r path; do
        info=$(stat -c '%F|%t:%T|%a|%u:%g' "$path")
        kind=${info%%|*}
        rest=${info#*|}
        case "$kind" in
        "character special file") echo "dev $path c $rest" ;;
        "block special file") echo "dev $path b $rest" ;;
        "fifo") echo "dev $path p ${rest#*|}" ;;
        "symbolic link") echo "dev $path l $(readlink "$path")" ;;
        "directory") echo "dev $path d ${rest#*|}" ;;
        *) echo "dev $path f ${rest#*|}" ;;
        esac
    done
}

probe() {
    # Masked and read-only paths. "read": empty/data/error. "write" opens a file for
    # appending without writing a byte, or touches a directory's times: the kernel
    # answers EROFS for a read-only mount before it looks at anything else.
    path=$1
    if [ ! -e "$path" ] && [ ! -L "$path" ]; then
        echo "probe $path absent"
        return
    fi
    if [ -d "$path" ]; then
        kind=dir
        if entries=$(ls -A "$path" 2>/dev/null); then
            if [ -z "$entries" ]; then read=empty; else read=data; fi
        else
            read=error
        fi
        err=$(touch -c "$path" 2>&1)
    else
        kind=file
        count=$(head -c 1 "$path" 2>/dev/null | wc -c)
        if ! head -c 0 "$path" >/dev/null 2>&1; then
            read=error
        elif [ "$count" -eq 0 ]; then
            read=empty
        else
            read=data
        fi
        err=$( { : >>"$path"; } 2>&1)
    fi
    case "$err" in
    "") write=allowed ;;
    *"Read-only file system"*) write=erofs ;;
    *) write=denied ;;
    esac
    echo "probe $path $kind read=$read write=$write"
}

node() {
    # A device node anywhere in the filesystem (linux.devices may be outside /dev).
    if [ -e "$1" ] || [ -L "$1" ]; then
        echo "node $1 $(stat -c '%F|%t:%T|%a|%u:%g' "$1")"
    else
        echo "node $1 absent"
    fi
}

section_probes() {
    probe /
    [ -r "$CONF" ] || return 0
    while read -r what arg; do
        case "$what" in
        probe) probe "$arg" ;;
        node) node "$arg" ;;
        esac
    done <"$CONF"
}

section_sysctls() {
    [ -r "$CONF" ] || return 0
    while read -r what key; do
        [ "$what" = sysctl ] || continue
        file=/proc/sys/$(echo "$key" | tr . /)
        if value=$(cat "$file" 2>/dev/null); then
            echo "sysctl $key $(echo $value)"
        else
            echo "sysctl $key unreadable"
        fi
    done <"$CONF"
}

section_tty() {
    # The terminal: what stdin is, the init's controlling terminal (tty_nr of its own
    # /proc/self/stat, read by the shell itself), the window size, /dev/console.
    if [ -t 0 ]; then echo "tty stdin $(tty)"; else echo "tty stdin none"; fi
    read -r _ _ _ _ _ _ ttynr _ </proc/self/stat
    echo "tty ctty $ttynr"
    if [ -t 0 ]; then echo "tty size $(stty size 2>/dev/null || echo unknown)"; fi
    if [ -e /dev/console ]; then
        echo "tty console $(stat -c '%t:%T' /dev/console)"
    else
        echo "tty console absent"
    fi
}

section_idmap() {
    # The user namespace's mappings: "uid_map CONTAINER HOST SIZE" (the runner's own
    # mapping when there is no user namespace).
    while read -r inside outside count; do echo "uid_map $inside $outside $count"; done \
        </proc/self/uid_map
    while read -r inside outside count; do echo "gid_map $inside $outside $count"; done \
        </proc/self/gid_map
}

errno_of() {
    # Run a command; print ok, or the errno its error message names.
    if err=$("$@" 2>&1 >/dev/null); then echo ok; return; fi
    case "$err" in
    *"Operation not permitted"*) echo EPERM ;;
    *"Permission denied"*) echo EACCES ;;
    *"Read-only file system"*) echo EROFS ;;
    *"Function not implemented"*) echo ENOSYS ;;
    *"No such device or address"*) echo ENXIO ;;
    *"No such device"*) echo ENODEV ;;
    *) echo error ;;
    esac
}

section_syscalls() {
    # System calls a seccomp profile may refuse, each tried once without changing
    # anything: getcwd(2) (busybox pwd, not the shell's builtin), chmod(2) of /dev to the
    # mode it already has.
    echo "syscall getcwd $(errno_of /bin/busybox pwd)"
    mode=$(stat -c %a /dev)
    echo "syscall chmod $(errno_of /bin/busybox chmod "$mode" /dev)"
}

section_netdevs() {
    # "netdev NAME FLAGS ADDRESSES" for each interface inspect.conf names (only those:
    # without a network namespace of its own the container would list the host's).
    [ -r "$CONF" ] || return 0
    while read -r what name; do
        [ "$what" = netdev ] || continue
        if [ ! -e "/sys/class/net/$name" ]; then
            echo "netdev $name absent"
            continue
        fi
        flags=$(ip -o link show dev "$name" | sed 's/^[^<]*<\([^>]*\)>.*/\1/')
        addrs=$(ip -o addr show dev "$name" scope global | awk '{printf "%s,", $4}')
        echo "netdev $name $flags ${addrs%,}"
    done <"$CONF"
}

section_sched() {
    # The execution domain (/proc/self/personality, hex) and the machine uname(2) reports
    # under it; the scheduling policy, nice and real-time priority (fields 41, 19 and 40
    # of /proc/self/stat, read by the shell itself); the I/O priority (ioprio_get(2) of
    # the init, through busybox ionice).
    read -r persona </proc/self/personality
    echo "persona domain $persona"
    echo "persona machine $(uname -m)"
    read -r stat </proc/self/stat
    set -- ${stat##*) }
    echo "sched policy ${39}"
    echo "sched nice ${17}"
    echo "sched rt_priority ${38}"
    echo "ioprio $(ionice -p $PID1 2>&1)"
}

section_cgfiles() {
    # "cgfile REL VALUE": a file of the container's own cgroups as the container sees them
    # under /sys/fs/cgroup (its cgroup mount), sorted lines joined by ';'. "devaccess PATH
    # read=R write=W": opening a device node for reading / for appending (never written),
    # ok or the errno: what the device cgroup lets the container do.
    [ -r "$CONF" ] || return 0
    while read -r what arg; do
        case "$what" in
        cgfile)
            if [ ! -e "/sys/fs/cgroup/$arg" ]; then
                echo "cgfile $arg absent"
            elif value=$(cat "/sys/fs/cgroup/$arg" 2>/dev/null); then
                echo "cgfile $arg $(echo "$value" | sort | tr '\n' ';' | sed 's/;$//')"
            else
                echo "cgfile $arg unreadable"
            fi ;;
        devaccess)
            echo "devaccess $arg read=$(errno_of head -c 0 "$arg")" \
                "write=$(errno_of sh -c ': >>"$1"' sh "$arg")" ;;
        esac
    done <"$CONF"
}

section_pid1
section_args
section_fds
section_ns
section_status
section_limits
section_misc
section_env
section_cgroup
section_mounts
section_dev
section_probes
section_sysctls
section_tty
section_idmap
section_syscalls
section_netdevs
section_sched
section_cgfiles
echo "end"

#!/bin/sh
# The fresh-machine check (issue 13): debootstrap a minbase Debian 12 into a temp dir,
# enter it as the real root of a private mount (and PID) namespace with pivot_root (a
# chroot breaks user namespaces and exec), with /proc, /sys (the cgroup hierarchies
# along), /dev mounted and /tmp a tmpfs, clone this checkout's HEAD into /root (0700)
# there and run the README's two commands: tools/run-example.sh, then tools/test.sh.
#
#     tools/fresh-machine.sh [--example-only] [ARGS for tools/test.sh...]
#
# As root. --example-only stops after run-example.sh. FRESH_MIRROR picks the Debian mirror.
# Everything it makes goes away at the end, failed or not: the mounts live only in the
# namespaces, which die with their last process (the PID namespace's init takes every
# process along), and the temp dir (under /var/tmp: it is ~1.5 GB with the engines) is
# removed without crossing into other filesystems.
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
[ "$(id -u)" = 0 ] || { echo "fresh-machine.sh: run it as root" >&2; exit 1; }
example_only=no
if [ "${1:-}" = --example-only ]; then example_only=yes; shift; fi
. tools/debs.sh
install_missing_debs fresh-machine "" debootstrap git

work=$(mktemp -d /var/tmp/ociruntime-fresh.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
trap 'exit 130' INT TERM
root=$work/root
mirror=${FRESH_MIRROR:-http://deb.debian.org/debian}

echo "fresh-machine: debootstrap --variant=minbase bookworm into $root" >&2
# In a mount namespace of its own: the /proc and /sys it mounts in the target go with it.
# git along: whoever cloned the checkout has it (and the tests read the clone's history).
unshare --mount --propagation private \
    debootstrap --variant=minbase --include=git bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 20 "$work/debootstrap.log" >&2
    echo "fresh-machine: debootstrap failed" >&2
    exit 1
}
# No daemon starts from a package's postinst (docker.io, containerd): no init runs here.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf"
echo 'Acquire::Retries "5";' >"$root/etc/apt/apt.conf.d/80retries"  # a flaky mirror
# The host's network goes along: its CA bundle (a TLS-intercepting egress proxy's CA, if
# any) for pip, which fetches the venv's packages from PyPI.
cert_env=
if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/host-ca-certificates.crt"
    cert_env="PIP_CERT=/etc/host-ca-certificates.crt"
fi
git clone -q "$repo" "$root/root/ociruntime"
git -C "$root/root/ociruntime" checkout -q "$(git rev-parse HEAD)"
chmod 700 "$root/root"

steps="cd /root/ociruntime && tools/run-example.sh"
[ "$example_only" = yes ] || steps="$steps && tools/test.sh \"\$@\""
# Nothing the two commands did may show in the checkout (.venv is ignored).
steps="$steps && { test -z \"\$(git status --porcelain)\" || { git status --short; echo fresh-machine: the checkout is not clean; exit 1; } >&2; }"
cat >"$work/enter.sh" <<EOF
set -eu
mount --bind "$root" "$root"
cd "$root"  # into the bind mount: pivot_root wants the new root a mount point
mount -t proc proc proc
mount --rbind /sys sys
mount --rbind /dev dev
mount -t tmpfs -o mode=1777 tmpfs tmp
mount -t tmpfs -o mode=755 tmpfs run
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot
echo "fresh-machine: in the fresh Debian 12 (pivot_root, /tmp a tmpfs, the clone in /root)" >&2
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \\
    LANG=C.UTF-8 $cert_env sh -c '$steps' fresh-machine "\$@"
EOF
rc=0
unshare --mount --pid --fork --kill-child --propagation private \
    sh "$work/enter.sh" "$@" || rc=$?
echo "fresh-machine: exit $rc" >&2
exit "$rc"

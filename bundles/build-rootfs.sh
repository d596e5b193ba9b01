#!/bin/sh
# Build a minimal busybox rootfs from Debian's busybox-static. Never downloads anything.
# Usage: bundles/build-rootfs.sh DEST_ROOTFS_DIR
set -eu
dest=${1:?usage: build-rootfs.sh DEST_ROOTFS_DIR}
bb=/bin/busybox
[ -x "$bb" ] || { echo "build-rootfs.sh: $bb missing: apt-get install busybox-static" >&2; exit 1; }
file_type=$(od -An -c -N4 "$bb" | tr -d ' ')
[ "$file_type" = "177ELF" ] || { echo "build-rootfs.sh: $bb is not an ELF binary" >&2; exit 1; }
mkdir -p "$dest"
cd "$dest"
mkdir -p bin sbin usr/bin usr/sbin etc dev proc sys tmp root home var run
chmod 1777 tmp
cp "$bb" bin/busybox
# One symlink per applet the binary offers, in the directory busybox itself names.
for applet in $(bin/busybox --list-full); do
    [ -e "$applet" ] || ln -s /bin/busybox "$applet"
done
cat > etc/passwd <<'PW'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PW
cat > etc/group <<'GR'
root:x:0:
daemon:x:1:
users:x:100:
nogroup:x:65534:
GR
echo "ociruntime-example" > etc/hostname

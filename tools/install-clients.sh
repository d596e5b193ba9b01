#!/bin/sh
# Install the container engines the client integration tests drive (Debian packages, as
# root). Idempotent: only what is missing is installed; prints nothing when all is there.
# Usage: tools/install-clients.sh [containerd] [podman]   (no argument: all of them)
set -eu
want=${*:-containerd podman}
debs=""
for client in $want; do
    case $client in
        # containerd 1.6 + ctr; the runc v2 shim (containerd-shim-runc-v2) is in the package.
        containerd) debs="$debs containerd" ;;
        # podman 4.3 + conmon + containers-common (policy.json, registries.conf); runc is
        # already there, so the "crun | runc" dependency pulls in nothing else.
        podman) debs="$debs podman" ;;
        *) echo "install-clients.sh: unknown client: $client" >&2; exit 2 ;;
    esac
done
missing=""
for p in $debs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-clients: installing Debian packages:$missing" >&2
apt-get update -qq
# --no-install-recommends: containerd recommends nothing we need; never start its service.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null

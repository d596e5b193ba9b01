#!/bin/sh
# Install the container engines the client integration tests drive (Debian packages, as
# root). Idempotent: only what is missing is installed; prints nothing when all is there.
# Usage: tools/install-clients.sh [containerd] [podman] [docker]   (no argument: all of them)
set -eu
want=${*:-containerd podman docker}
debs=""
for client in $want; do
    case $client in
        # containerd 1.6 + ctr; the runc v2 shim (containerd-shim-runc-v2) is in the package.
        containerd) debs="$debs containerd" ;;
        # podman 4.3 + conmon + containers-common (policy.json, registries.conf); runc is
        # already there, so the "crun | runc" dependency pulls in nothing else.
        podman) debs="$debs podman" ;;
        # docker.io 20.10: dockerd and the docker client (/usr/bin/docker); its service is
        # never started (policy-rc.d below): the tests start a private dockerd of their own.
        docker) debs="$debs docker.io" ;;
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
# No package's service may start (docker.io's postinst would start dockerd): policy-rc.d
# says no for as long as apt runs, unless the machine already has one.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
# --no-install-recommends: containerd and docker.io recommend nothing we need.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null

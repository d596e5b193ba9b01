# Sourced by tools/setup.sh and tools/vm-lane.sh:
# install_missing_debs WHO APT_OPTIONS PACKAGE... installs (apt-get, as root) the Debian
# packages not installed yet, saying which on stderr as WHO; nothing when all are there.
install_missing_debs() {
    who=$1
    apt_options=$2
    shift 2
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "$who: installing Debian packages:$missing" >&2
        apt-get update -qq
        # shellcheck disable=SC2086 # word splitting wanted: options and package names
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $apt_options $missing >/dev/null
    fi
}

"""`features`: what this runtime implements, truthfully (runtime-spec features.md)."""

from __future__ import annotations

from ociruntime import SPEC_VERSION, __version__
from ociruntime.process.hooks import HOOK_KINDS
from ociruntime.process.namespaces import FLAGS
from ociruntime.rootfs.mountopts import SUPPORTED_OPTIONS
from ociruntime.security.capabilities import CAP_NUMBERS
from ociruntime.security.seccomp import features as seccomp_features

#: Namespaces `create` can make or join.
IMPLEMENTED_NAMESPACES = tuple(sorted(FLAGS))


def features() -> dict:
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted(SUPPORTED_OPTIONS),
        "linux": {
            "namespaces": list(IMPLEMENTED_NAMESPACES),
            "capabilities": list(CAP_NUMBERS),
            "cgroup": {
                "v1": True,
                "v2": True,
                "systemd": True,
                "systemdUser": False,
                "rdma": True,
            },
            "seccomp": seccomp_features(),
            # Implemented (applied as runc does); whether this host has them is another
            # matter (features.md: the runtime's support, not the host's).
            "apparmor": {"enabled": True},
            "selinux": {"enabled": True},
            "intelRdt": {"enabled": False},
            "netDevices": {"enabled": True},
            "mountExtensions": {"idmap": {"enabled": True}},
        },
        "annotations": {
            "org.opencontainers.runtime-spec.version": SPEC_VERSION,
            "io.github.ociruntime.version": __version__,
            # runc's org.opencontainers.runc.checkpoint.enabled (features.md's example): spec
            # 1.3.0 has no property for it, so an annotation in our own namespace. Like
            # every entry, the runtime's support, not whether this host's criu works.
            "io.github.ociruntime.checkpoint.enabled": "true",
        },  # fmt: skip
    }

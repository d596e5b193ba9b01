"""AppArmor and SELinux: the labels a container asks for, applied as runc 1.1.5 does.

Both LSMs label a process at its next execve through files in /proc/<tid>/attr, so the
init (or exec's child) writes them before it execs the user process:

- `process.apparmorProfile` (exec's `--apparmor`): "exec <profile>" to the AppArmor exec
  attribute. Like runc 1.1.5 this is written whether or not AppArmor is enabled; on a
  host without it the kernel refuses the write and the container does not start (engines
  only ask for a profile where AppArmor is enabled).
- `process.selinuxLabel` (exec's `--process-label`): refused up front where SELinux is
  off, with runc's message; otherwise the exec attribute, and the keycreate attribute
  so the container's session keyring carries the label too.
- `linux.mountLabel`: a `context=` option on the filesystems the container mounts for
  itself (ociruntime.rootfs.mounts), and the label of the mqueue mount (here).

Nothing here is imported unless a config names one of these fields.
"""

from __future__ import annotations

import os

from ociruntime.errors import field_error, field_error_at, pointer
from ociruntime.security import procfs

_SELINUX_DISABLED = "selinux label is specified in config, but selinux is disabled or not supported"


def selinux_enabled() -> bool:
    """go-selinux's rule: selinuxfs is mounted and this process is not labelled "kernel"."""
    try:
        with open("/proc/self/mountinfo") as f:
            if not any(" - selinuxfs " in line for line in f):
                return False
        return procfs.read("self/attr/current").strip(b"\0\n") != b"kernel"
    except OSError:
        return False


def check_selinux_label(label: str, field: str) -> None:
    """Before anything is made: a label cannot be honoured without SELinux (runc refuses
    the config the same way)."""
    if label and not selinux_enabled():
        raise field_error_at(field, _SELINUX_DISABLED)


def _attr_path(lsm: str, attr: str) -> str:
    """The per-thread attribute file: the LSM's own directory where the kernel has one
    (several LSMs stacked), else the shared one. Named as runc's messages name it."""
    own = f"/proc/thread-self/attr/{lsm}/{attr}"
    return own if procfs.exists(own[6:]) else f"/proc/thread-self/attr/{attr}"


def _write_attr(path: str, value: str) -> None:
    """Through the trusted procfs: a label written into a file mounted over the attr
    directory would leave the process unconfined, silently (CVE-2025-52881)."""
    procfs.write(path.removeprefix("/proc/"), value)


def apply_apparmor(profile: str, field: str) -> None:
    """Switch to `profile` at the next execve (AppArmor's change_onexec)."""
    if not profile:
        return
    path = _attr_path("apparmor", "exec")
    try:
        _write_attr(path, f"exec {profile}")
    except OSError as e:
        # runc's wording, with the field in front.
        reason = (e.strerror or str(e)).lower()
        raise field_error_at(
            field, f"{profile}: apparmor failed to apply profile: write {path}: {reason}"
        ) from None


def set_selinux_labels(label: str, field: str) -> None:
    """The process label at the next execve, and for the keys it creates until then (the
    session keyring joined next)."""
    if not label:
        return
    for attr in ("keycreate", "exec"):
        path = _attr_path("selinux", attr)
        try:
            _write_attr(path, label)
        except OSError as e:
            raise field_error_at(field, f"{label}: writing {path}: {e.strerror}") from None


def label_mount_root(path: str, label: str) -> None:
    """mqueue takes no context= option: runc labels its root instead, where SELinux is on.
    `path` may be a /proc/self/fd/N link (followed)."""
    if label and selinux_enabled():
        try:
            os.setxattr(path, "security.selinux", label.encode())
        except OSError as e:
            raise field_error(
                pointer("linux", "mountLabel"), f"{label}: labelling mqueue: {e.strerror}"
            ) from None

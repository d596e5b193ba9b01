"""The kernel layer: every fact about the Linux ABI the runtime relies on, in one place.

* `numbers`: system call numbers per architecture (x86_64 and aarch64; aarch64 uses the
  kernel's generic table, include/uapi/asm-generic/unistd.h), chosen once at import from
  `os.uname().machine`; an unknown architecture fails there with a clear message instead
  of calling the wrong system call.
* `constants`: the flag values (MS_*, MOUNT_ATTR_*, CLONE_*, PR_*, RESOLVE_*, KEYCTL_*...),
  each defined once; every other module imports them from here.
* `syscalls`: the wrappers (mount, pivot_root, unshare, setns, keyctl, capset...) the
  rest of the runtime calls as `sc.<name>(...)`, always through the module attribute, so
  that tests can swap the whole layer for a recording fake (`WRAPPERS` names the
  contract; tests/kernelfake.py implements it) and check flags and orders without root.

Kept import-light: the runtime starts on every container operation, so nothing here
imports typing, enum, dataclasses or re; `syscalls` loads ctypes' libc once.
A package rather than one file: the numbers and constants are data a reviewer checks
against the kernel headers (tests/test_kernel_layer.py does), the wrappers are code.
"""

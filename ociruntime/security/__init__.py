"""Security facilities: seccomp, capabilities, LSMs, a trusted procfs, host-file hiding."""

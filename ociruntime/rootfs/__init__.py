"""The container's root filesystem: mounts, /dev, masked and read-only paths, pivot_root."""

"""What a stage applies to the container's process: namespaces, ids, limits, terminal, hooks."""

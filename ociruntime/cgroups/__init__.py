"""Control groups: where a container's cgroups are, what is written there, what is read back."""

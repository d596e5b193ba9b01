"""The processes between the runtime and the container's process, and their messages."""

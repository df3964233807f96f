"""The local profile: component environments, the process manager and health checks."""

"""Small shims for third-party packages; each module documents what and why."""

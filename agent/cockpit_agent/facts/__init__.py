"""Read-only views of the host, gathered once per run."""

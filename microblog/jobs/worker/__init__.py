"""The worker side of jobs: the broker, running attempts, the reaper, liveness and metrics."""

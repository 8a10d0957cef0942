"""The event loop: detector set-up, function chains, MPI, progress."""

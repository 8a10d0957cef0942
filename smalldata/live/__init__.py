"""The producer on the live karabo-bridge stream (docs/live.md): source, layouts, rounds, growing file."""

"""The output file: part files, merge, atomic publication."""

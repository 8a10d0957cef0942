"""The interactive analysis session on an output file."""

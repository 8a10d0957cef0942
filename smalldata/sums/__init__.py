"""Exact run sums and binned cubes."""

"""Reading runs through extra-data: run access, frame index, point data."""

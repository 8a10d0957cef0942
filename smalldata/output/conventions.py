"""Names and attributes that mark parts of the output file's layout (shared by the writer and its readers)."""

#: attribute marking datasets that are flat ragged values (not one row per event)
RAGGED_ATTR = "ragged_values_of"
#: netCDF-4's name of a dimension scale that is not a variable (a dimension without values)
NETCDF_DIMENSION_ONLY = "This is a netCDF dimension but not a netCDF variable."

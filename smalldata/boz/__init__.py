"""BOZ: beam-splitting off-axis zone plate XAS on one DSSC module.

One concept per module: :mod:`.rois` (finding and checking the three beam ROIs),
:mod:`.flatfield` (the plane flat field between the orders), :mod:`.nonlinearity`
(the 512-entry lookup table of the DSSC response), :mod:`.corrections` (the versioned
corrections file), :mod:`.accumulate` (the MPI pass over a run's frames),
:mod:`.determine` (the whole correction determination of ``smd_boz``),
:mod:`.plots` (diagnostic figures) and :mod:`.xas` (binned spectra).
See ``docs/boz.md``.
"""
ORDERS = ("n", "0", "p")

"""The producer's configuration: the schema machinery (:mod:`.schema`), the key tables (:mod:`.keys`), loading and validation (:mod:`.producer`).

Nothing is imported here: :mod:`smalldata.calib.badpixels` uses the schema module while
:mod:`.producer` uses badpixels, so importing :mod:`.producer` from this package would
make ``smd_dark`` (which imports badpixels first) fail with a circular import.
"""

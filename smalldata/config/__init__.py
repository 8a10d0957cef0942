"""The producer's configuration: the schema machinery (:mod:`.schema`), the key tables (:mod:`.keys`), the dark
characterisation's keys (:mod:`.dark`), loading and validation (:mod:`.producer`).

Nothing is imported here, so that importing one of them (``smd_dark`` needs only :mod:`.dark`) does not load
the function registry and the plug-in machinery that :mod:`.producer` brings along.
"""

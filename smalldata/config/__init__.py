"""The producer's configuration: the schema machinery (:mod:`.schema`), the key tables (:mod:`.keys`), the dark
characterisation's keys (:mod:`.dark`), loading and validation (:mod:`.producer`).

Nothing is imported here, so that a command that needs only the key tables (``smd_dark``) does not load
the function registry and the plug-in machinery that :mod:`.producer` brings along.
"""

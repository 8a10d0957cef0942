"""The plug-in contract: frames, the DetObjectFunc base class, ragged outputs, function lookup."""

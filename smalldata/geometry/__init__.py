"""DSSC pixel positions (extra-geom) and momentum-transfer maps."""

"""daskod.median."""

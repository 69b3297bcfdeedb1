"""daskod.resample."""

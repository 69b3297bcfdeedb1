"""daskod.blot."""

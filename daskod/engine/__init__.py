"""daskod.engine."""

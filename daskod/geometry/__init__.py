"""daskod.geometry."""

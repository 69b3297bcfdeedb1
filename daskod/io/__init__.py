"""daskod.io."""

"""daskod.modes."""

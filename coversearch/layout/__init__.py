"""2-D layouts of the catalogue (the map)."""

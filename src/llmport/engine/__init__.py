"""The engine seam: the protocol every engine kind speaks, and the registry of kinds."""

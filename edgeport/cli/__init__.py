"""Front ends: the `edgeport` command (click), its progress display, edgeport.toml, and the Python API."""

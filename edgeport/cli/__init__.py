"""Front ends: the `edgeport` command (click), its progress display, edgeport.toml, the Python API, setup
and doctor.

Owns what a user types and sees on the terminal. May import everything in the core (lazily: `edgeport
--help` imports click only); never a plug-in module (the registry finds them)."""

"""edgeport.targets: one module per runtime (each a Runtime plug-in)."""

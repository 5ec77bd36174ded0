"""edgeport.targets: one package per runtime family, each holding Runtime plug-ins."""

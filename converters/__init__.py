"""edgeport.converters: one module per output format (each a Converter plug-in)."""

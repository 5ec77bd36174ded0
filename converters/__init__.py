"""edgeport.converters: one package per format family, each a Converter plug-in (never importing a runtime)."""

"""LiteRT runtime family: the ai-edge-litert interpreter."""

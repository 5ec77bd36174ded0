"""The front-end: a SavedModel loaded once, its signature, samples to feed it, and what `inspect` shows."""

"""The front-end: the pre-load scan, the SavedModel loaded once, its signature, the frozen graph every
format shares and its rewrites, samples to feed it, and what `inspect` shows.

Runs inside the model service (TensorFlow lives here, imported lazily). May import edgeport.data,
edgeport.errors, report.wording, and (inspection only: `inspect` starts a model service) run/; never cli/,
fleet/ or a plug-in."""

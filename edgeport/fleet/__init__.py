"""`edgeport fleet`: many models on a Ray cluster, each through the unchanged pipeline.

Owns the manifest, the Ray tasks, retries and the fleet's own report. May import run/, report/, cli/'s
request builder, and Ray (lazily); never a plug-in module."""

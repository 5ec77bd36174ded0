"""One run: the request, plug-in options, the registry, the pipeline and the worker processes it uses."""

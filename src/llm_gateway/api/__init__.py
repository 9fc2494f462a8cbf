"""HTTP only: parse the request, call the pipeline, shape the answer."""

"""Operators' interfaces that span the whole service: health checks and the metrics endpoint."""

"""Trace layer: the documented routing schema and its file forms."""
from .io import dumps, load, loads, save
from .schema import FORMAT, VERSION, Trace, TraceFormatError, model_description

__all__ = ["FORMAT", "VERSION", "Trace", "TraceFormatError", "dumps", "load", "loads", "model_description", "save"]

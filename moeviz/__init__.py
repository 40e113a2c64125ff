"""moeviz: exact Mixture-of-Experts routing from llama.cpp, live and replayable."""
__version__ = "0.1.0"

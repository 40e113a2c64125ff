"""The prompt library (one JSON file per prompt), shipped as package data: see moeviz/resources.py."""

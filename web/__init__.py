"""The page (templates, CSS, ES modules), shipped as package data: see moeviz/resources.py."""

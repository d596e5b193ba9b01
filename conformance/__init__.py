"""The differential conformance suite: the same configs under ociruntime and runc, each
report checked against what its config.json asks for and against the other runtime's.

`.venv/bin/python -m conformance.run` runs it and writes conformance/RESULTS.md; see
conformance/README.md for the parts and how to extend them.
"""

"""The web UI at ``/ui``: a static ES-module page shipped in the package (``static/``),
talking to the server through its public APIs, plus the one thing those cannot give it
(``pulls.py``: pull progress that outlives the page)."""

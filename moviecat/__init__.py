"""moviecat: the service's command-line client (upload, follow, browse) and its server-side commands.

`moviecat.cli` is the entry point (the `moviecat` console script, or `python -m moviecat`); `moviecat.client`
speaks the HTTP API; `moviecat.output` draws the bars and tables; `moviecat.generate` writes test CSVs.
"""

__version__ = "1.0.0"

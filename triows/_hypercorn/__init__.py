"""The hypercorn backend of ``triows.serve``: hypercorn's trio worker, unpatched."""

from ._serve import serve_hypercorn

__all__ = ["serve_hypercorn"]

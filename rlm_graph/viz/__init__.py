"""The trajectory viewer behind ``rlm-graph viz``: a local web page for ``.jsonl`` run logs.

It opens logs written by rlm-graph and by the reference ``rlms`` logger, from the served directory,
a file picker, or drag-and-drop. One HTML page, one script, one stylesheet, all in this package:
no Node build and no network.

    >>> from rlm_graph.viz import serve
    >>> serve("logs", port=3001)  # doctest: +SKIP
"""

from rlm_graph.viz.server import ViewerServer, make_server, serve

__all__ = ["ViewerServer", "make_server", "serve"]

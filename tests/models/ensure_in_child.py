"""Run ``ensure_servers`` in a separate process: ``python ensure_in_child.py '<json>'``.

The JSON holds ``packages`` (a directory to put on sys.path), ``cache``, ``spec`` (ModelSpec
fields) and ``command``. Prints the returned ``{role: base_url}`` as JSON.
"""

from __future__ import annotations

import json
import sys

from rlm_graph.models.local import ModelSpec, ensure_servers

if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    sys.path.insert(0, job["packages"])
    spec = ModelSpec(**job["spec"])
    urls = ensure_servers(("root",), models={"root": "fake"}, cache=job["cache"], catalog={"fake": spec},
                          command=job["command"], timeout=30, progress=None)
    print(json.dumps(urls))

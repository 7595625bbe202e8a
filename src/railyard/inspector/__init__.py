"""The run inspector: a small web app over the store the runs live in.

`railyard ui` serves it (`pip install 'railyard-graph[ui]'`); `create_app` gives the
ASGI app itself, to serve with uvicorn or mount in an app of your own. It shows the
runs (filtered by status, graph and time, with counts), and each run: the graph with
the nodes it visited and the one it is at, a timeline of its steps and attempts, the
state at any step and what that step changed, its error and traceback, live as the
run moves (server-sent events). It answers a waiting run through a form made from the
payload's type, and cancels, resumes and forks runs (the last two for the graphs it is
given). It reads the records alone, so it shows runs of graphs it cannot import.

Safety: it serves 127.0.0.1 by default; anywhere else it needs a token, checked on
every request; actions are POSTs refused from other sites and carry a form token;
every stored value is escaped; `read_only=True` hides and refuses every action.
"""

from __future__ import annotations

from railyard.inspector._app import LOOPBACK, create_app

__all__ = ("LOOPBACK", "create_app")

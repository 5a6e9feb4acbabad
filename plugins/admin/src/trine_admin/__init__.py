"""trine-admin: the admin commands of the ``trine`` program, over the HTTP API.

- ``trine runs list|show|journal|events|start|cancel|signal|retry|move|history``
- ``trine workers``
- ``trine functions``
- ``trine builds``
- ``trine replay --worker module:attr``: the latest finished runs, replayed against local code

Each talks to the gateway at ``--url`` (default ``$TRINE_URL``, else ``http://127.0.0.1:7480``)
through :class:`trine.Client`; tables by default, the API's JSON with ``--json``. Exit codes: see
:data:`trine_admin.cli.EXIT_CODES`. Registered through the ``trine.commands`` entry points
(:mod:`trine_admin.plugin`).
"""

from trine_admin.cli import COMMANDS, EXIT_CODES, main

__all__ = ["COMMANDS", "EXIT_CODES", "main"]

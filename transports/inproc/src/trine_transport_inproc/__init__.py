"""trine-transport-inproc: roles in one process call each other directly."""

from trine_transport_inproc.plugin import InprocTransport

__all__ = ["InprocTransport"]

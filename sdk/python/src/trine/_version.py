"""The SDK's version, sent in ``Register`` so the coordinator can tell SDK builds apart."""

__version__ = "0.1.0"

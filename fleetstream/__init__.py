"""Shared plumbing for fleetstream: settings, the CLI and the local stack supervisor.

The data path lives in the top-level packages ``connectors``, ``streams``, ``schemas``, ``sinks`` and
``gateway``; this package only wires them together.
"""

__version__ = "0.1.0"

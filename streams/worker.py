"""Runs the stream agents as one worker process (``fleetstream run streams``)."""

from __future__ import annotations

import faust

from runtime.settings import Settings

from . import changelogs
from .app import create_app


def run(s: Settings, loglevel: str = "info") -> None:
    app = create_app(s)
    changelogs.declare(app, s.kafka)
    worker = faust.Worker(app, loglevel=loglevel, logfile=None)
    worker.execute_from_commandline()

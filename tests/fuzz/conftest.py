"""Property tests of every payload parser in connectors/ (hypothesis). Bounded so the whole folder runs in
seconds in CI: a fixed number of examples, no deadline (a busy machine must not fail them), no example
database written into the work tree. ``HYPOTHESIS_PROFILE=long`` explores more when run by hand."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=200, deadline=None, database=None, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=20_000, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

"""The ``news`` scenario: a feed of articles that age within hours."""

from __future__ import annotations

from hybridrec import Scenario

#: The scenario's events: a reader opens an article, and sometimes shares it.
READ, SHARE = "read", "share"

NEWS = Scenario(
    name="news",
    description="News feed: articles that age within hours; reads and shares.",
    event_weights={READ: 1.0, SHARE: 4.0},
    positive_events=(READ, SHARE),
    # ranked alone, a scorer is judged by its "read" task, or "click" if it has none
    objective=(READ, "click"),
    objective_events={SHARE: 1.0, READ: 0.5},
    fallback="freshness",
)

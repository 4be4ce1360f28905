"""Impressions labelled by the clicks that follow them."""

from hybridrec import columns as C
from hybridrec.builtin.scenarios import ADS, SHOP
from hybridrec.impressions import exposure_events, labelled_impressions
from hybridrec.testing import events_frame


def test_exposures_are_the_events_weighed_zero_and_not_positive():
    assert exposure_events(ADS) == ("impression",)
    assert exposure_events(SHOP) == ()


def test_a_click_labels_the_latest_impression_before_it_within_the_window():
    events = events_frame([
        ("u1", "a1", "ads", "impression", "2025-01-01T10:00:00"),
        ("u1", "a1", "ads", "impression", "2025-01-01T11:00:00"),
        ("u1", "a1", "ads", "click", "2025-01-01T11:00:05"),
        ("u1", "a2", "ads", "impression", "2025-01-01T09:00:00"),
        ("u1", "a2", "ads", "click", "2025-01-03T09:00:00"),  # two days later: no credit
        ("u2", "a1", "ads", "impression", "2025-01-01T12:00:00"),
        ("u2", "a1", "shop", "view", "2025-01-01T12:00:00"),  # another scenario
    ])
    rows = labelled_impressions(events, ADS, 24)
    got = {(r.user_id, r.item_id, r.event_timestamp.hour): r.label for r in rows.itertuples()}
    assert got == {("u1", "a1", 10): 0, ("u1", "a1", 11): 1, ("u1", "a2", 9): 0,
                   ("u2", "a1", 12): 0}
    assert rows[C.EVENT_TIMESTAMP].is_monotonic_increasing

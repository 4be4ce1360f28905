"""hybridrec-news: the ``news`` scenario, written against hybridrec's public plugin API only."""

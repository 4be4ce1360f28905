"""The scorer each of these plugins registers: popularity under the plugin's own name."""

from hybridrec.builtin.popularity import PopularityScorer


def named(name: str) -> type[PopularityScorer]:
    return type(f"{name.title()}Scorer", (PopularityScorer,), {"name": name})

"""The plugin system: registration rules in-process, and real pip-installed plugins."""

import json
import types

import pytest

from conftest import BIN, base_env, run
from hybridrec import PLUGIN_API, Scenario, hookimpl
from hybridrec.builtin.popularity import PopularityScorer
from hybridrec.plugins import PluginError, build_registry


def plugin(**hooks) -> types.ModuleType:
    module = types.ModuleType("test_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def test_builtins_register_through_the_hooks():
    registry = build_registry()
    assert registry.scorers["popularity"] is PopularityScorer
    assert {"shop", "video", "ads", "movies"} <= set(registry.scenarios)
    assert "weighted" in registry.blenders
    assert registry.owner("scorers", "popularity") == "hybridrec.builtin.popularity"


def test_duplicate_name_is_reported_with_both_plugins_and_first_kept():
    def register_scenarios(register):
        register(Scenario(name="shop", description="impostor"))

    registry = build_registry(extra=[("impostor", plugin(register_scenarios=register_scenarios))])
    assert registry.scenarios["shop"].description != "impostor"
    [problem] = registry.problems
    assert "'impostor'" in problem and "'hybridrec.builtin.scenarios'" in problem
    assert "'shop'" in problem


def test_replace_true_overrides_explicitly():
    def register_scenarios(register):
        register(Scenario(name="shop", description="mine"), replace=True)

    registry = build_registry(extra=[("mine", plugin(register_scenarios=register_scenarios))])
    assert registry.scenarios["shop"].description == "mine"
    assert registry.owner("scenarios", "shop") == "mine"
    assert registry.problems == []


def test_a_failing_hook_does_not_take_the_others_down():
    def register_scorers(register):
        raise RuntimeError("boom")

    registry = build_registry(extra=[("faulty", plugin(register_scorers=register_scorers))])
    assert "popularity" in registry.scorers
    assert any("'faulty'" in p and "boom" in p for p in registry.problems)


def test_a_trylast_plugin_cannot_claim_a_builtin_name():
    """pluggy calls trylast implementations first; registration order is ours."""
    def register_scenarios(register):
        register(Scenario(name="shop", description="late"))

    late = types.ModuleType("late")
    late.register_scenarios = hookimpl(trylast=True)(register_scenarios)
    registry = build_registry(extra=[("late", late)])
    assert registry.scenarios["shop"].description != "late"
    assert registry.owner("scenarios", "shop") == "hybridrec.builtin.scenarios"
    assert any("'late'" in p and "'shop'" in p for p in registry.problems)


def test_tryfirst_does_not_jump_the_claim_order():
    def first(register):
        register(Scenario(name="news", description="first"))

    def eager(register):
        register(Scenario(name="news", description="eager"))

    a, b = types.ModuleType("a"), types.ModuleType("b")
    a.register_scenarios = hookimpl(first)
    b.register_scenarios = hookimpl(tryfirst=True)(eager)
    registry = build_registry(extra=[("a", a), ("b", b)])
    assert registry.scenarios["news"].description == "first"
    assert registry.owner("scenarios", "news") == "a"


def test_a_wrapper_on_a_registry_hook_is_reported_and_not_called():
    called = []

    def register_scorers(register):
        called.append(True)
        yield

    module = types.ModuleType("wrapping")
    module.register_scorers = hookimpl(wrapper=True)(register_scorers)
    registry = build_registry(extra=[("wrapping", module)])
    assert "popularity" in registry.scorers and not called
    assert any("'wrapping'" in p and "wrapper" in p for p in registry.problems)


def test_a_misspelled_hook_is_reported_with_the_likely_hook():
    registry = build_registry(extra=[("typo", plugin(register_scorer=lambda register: None))])
    [problem] = registry.problems
    assert "'typo'" in problem and "'register_scorer'" in problem
    assert "did you mean 'register_scorers'" in problem
    with pytest.raises(PluginError, match="register_scorer"):
        build_registry(strict=True, extra=[("typo", plugin(
            register_scorer=lambda register: None))])


def test_installed_plugins_claim_in_name_order(tmp_path, monkeypatch):
    """Two installed plugins registering one name: the first by entry-point name keeps it,
    whatever order the environment lists them in."""
    from importlib import metadata

    import hybridrec.plugins as P

    for name in ("zeta", "alpha"):
        (tmp_path / f"claim_{name}.py").write_text(
            "from hybridrec import Scenario, hookimpl\n"
            "@hookimpl\n"
            "def register_scenarios(register):\n"
            f"    register(Scenario(name='news', description='{name}'))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [metadata.EntryPoint(name=n, value=f"claim_{n}", group="hybridrec")
              for n in ("zeta", "alpha")]
    for order in (points, points[::-1]):
        monkeypatch.setattr(P, "_entry_points", lambda order=order: order)
        registry = build_registry()
        assert registry.scenarios["news"].description == "alpha"


def test_invalid_objects_are_reported():
    def register_scorers(register):
        register(object)

    registry = build_registry(extra=[("odd", plugin(register_scorers=register_scorers))])
    assert any("'odd'" in p and "Scorer" in p for p in registry.problems)


def test_strict_mode_raises():
    def register_scorers(register):
        register(PopularityScorer)

    with pytest.raises(PluginError, match="popularity"):
        build_registry(strict=True, extra=[("dup", plugin(register_scorers=register_scorers))])


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match="known: .*popularity"):
        build_registry().get("scorers", "nope")


# Real packages, installed with pip and found through their entry points -----------------

def plugins_json(env, *extra) -> list[dict]:
    out = run([str(BIN / "hybridrec"), "plugins", "--json", *extra], env).stdout
    return json.loads(out)


def test_installed_plugin_is_discovered_with_version_and_registrations(hello_site):
    env = base_env(PYTHONPATH=str(hello_site))
    listing = {p["name"]: p for p in plugins_json(env)}
    hello = listing["hello"]
    assert hello["version"] == "0.3.0" and not hello["builtin"]
    assert hello["registered"] == {"scorers": ["cheapest"]}  # feature hooks need --features
    assert listing["hybridrec.builtin.popularity"]["registered"]["scorers"] == ["popularity"]
    full = {p["name"]: p for p in plugins_json(env, "--features")}
    assert full["hello"]["registered"] == {"scorers": ["cheapest"],
                                           "feature_definitions": ["merchant"]}


def test_broken_plugins_are_reported_and_the_rest_still_load(hello_site, broken_site):
    env = base_env(PYTHONPATH=f"{hello_site}:{broken_site}")
    listing = {p["name"]: p for p in plugins_json(env)}
    assert "cheapest" in listing["hello"]["registered"]["scorers"]
    [missing] = listing["broken"]["problems"]
    assert "failed to load" in missing and "a_module_that_does_not_exist" in missing
    [taken] = listing["squatter"]["problems"]
    assert "'shop'" in taken and "hybridrec.builtin.scenarios" in taken

    strict = run([str(BIN / "hybridrec"), "plugins", "--strict"], env, check=False)
    assert strict.returncode != 0
    assert "broken" in strict.stderr and "squatter" in strict.stderr


def test_a_plugin_for_another_plugin_api_is_refused_naming_both_versions(eras_site):
    env = base_env(PYTHONPATH=str(eras_site))
    listing = {p["name"]: p for p in plugins_json(env)}
    [refused] = listing["future"]["problems"]
    assert refused.startswith("plugin 'future' (hybridrec-eras 2.1.0)"), refused
    assert ">=2.0,<3" in refused and f"plugin API {PLUGIN_API}" in refused
    assert "not loaded" in refused
    assert listing["future"]["registered"] == {}
    [garbled] = listing["garbled"]["problems"]
    assert "'the second one'" in garbled and "not loaded" in garbled
    assert listing["garbled"]["registered"] == {}
    [undeclared] = listing["undeclared"]["problems"]  # loaded, and told what to declare
    assert "declares no plugin API versions" in undeclared
    assert f'HYBRIDREC_PLUGIN_API = ">={PLUGIN_API},<2"' in undeclared
    assert listing["undeclared"]["registered"] == {"scorers": ["undeclared"]}
    shown = run([str(BIN / "hybridrec"), "plugins"], env, check=False)
    assert f"plugin API {PLUGIN_API}" in shown.stdout.splitlines()[0]
    assert "PROBLEM: plugin 'future' (hybridrec-eras 2.1.0) works with plugin API >=2.0,<3" \
        in shown.stdout


def test_first_party_plugins_declare_the_plugin_api():
    listing = {p["name"]: p for p in plugins_json(base_env())}
    for name in ("als", "ctr", "llm"):
        if name in listing:
            assert listing[name]["problems"] == [], listing[name]


def test_a_deprecated_hook_or_method_warns_once_naming_the_plugin(monkeypatch, caplog):
    from hybridrec import contracts, hookspecs, plugins

    monkeypatch.setattr(hookspecs, "DEPRECATED_HOOKS",
                        {"register_candidate_sources": "register them as scorers"})
    monkeypatch.setattr(contracts, "DEPRECATED_METHODS",
                        {("Scorer", "supports"): "declare scenarios instead"})
    monkeypatch.setattr(plugins, "_warned", set())

    class Picky(PopularityScorer):
        name = "picky"

        def supports(self, scenario):
            return True

    def register_scorers(register):
        register(Picky)
        register(Picky, replace=True)  # a second registration: still one warning

    def register_candidate_sources(register):
        pass

    with pytest.warns(FutureWarning) as caught:
        for _ in range(2):  # a second registry warns no more
            build_registry(extra=[("oldtimer", plugin(
                register_scorers=register_scorers,
                register_candidate_sources=register_candidate_sources))]).collect_all()
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert len(messages) == len(set(messages)), messages  # once each, over both registries
    assert [m for m in messages if "'oldtimer'" in m] == [
        "plugin 'oldtimer' uses the hook 'register_candidate_sources', which is deprecated: "
        "register them as scorers",
        "plugin 'oldtimer' uses Scorer.supports (in Picky), which is deprecated: declare "
        "scenarios instead"], messages
    # a class that defines it is named (EASE); one that only inherits it is not (Popularity)
    assert any("'hybridrec.builtin.ease' uses Scorer.supports (in EaseScorer)" in m
               for m in messages)
    assert not any("PopularityScorer" in m for m in messages)


def test_load_plugins_variable_restricts_installed_plugins(hello_site, broken_site):
    env = base_env(PYTHONPATH=f"{hello_site}:{broken_site}", HYBRIDREC_LOAD_PLUGINS="hello")
    names = {p["name"] for p in plugins_json(env)}
    assert "hello" in names and "broken" not in names and "squatter" not in names
    env["HYBRIDREC_LOAD_PLUGINS"] = ""
    names = {p["name"] for p in plugins_json(env)}
    assert not names & {"hello", "broken", "squatter"}
    assert "hybridrec.builtin.popularity" in names  # built-ins always load


def test_plugin_commands_hook():
    import click

    def register_commands(cli):
        @cli.command()
        def hello():
            click.echo("hi")

    registry = build_registry(extra=[("cmds", plugin(register_commands=register_commands))])
    group = click.Group()
    registry.add_commands(group)
    assert "hello" in group.commands


def test_a_failing_feature_hook_is_reported_once(tmp_path):
    def register_feature_definitions(register, repo_path):
        raise RuntimeError("no views today")

    registry = build_registry(extra=[("views", plugin(
        register_feature_definitions=register_feature_definitions))])
    registry.feature_definitions_for(tmp_path)
    registry.feature_definitions_for(tmp_path)
    assert [p for p in registry.problems if "no views today" in p] == [
        "plugin 'views' failed in register_feature_definitions: RuntimeError: no views today"]
    assert "user_profile" in registry.feature_definitions_for(tmp_path)  # others unaffected


def test_threads_asking_for_a_kind_at_once_all_see_it_whole():
    """The server's loader and request threads may ask for a kind while its hooks run."""
    import threading
    import time

    def register_scenarios(register):
        time.sleep(0.3)  # a slow plugin keeps the hook running while others ask
        register(Scenario(name="slow"))

    registry = build_registry(extra=[("slow", plugin(register_scenarios=register_scenarios))])
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(set(registry.scenarios)))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 6 and all({"shop", "slow"} <= names for names in seen)


def test_derived_tables_are_written_by_every_data_command(tmp_path, monkeypatch):
    """A plugin's DerivedTable is derived from the events and written beside the core's
    tables; an object that is not one is reported, not written."""
    import pandas as pd

    import hybridrec.plugins as P
    from hybridrec import columns as C
    from hybridrec.contracts import DerivedTable
    from hybridrec.data.tables import Dataset, write_dataset
    from hybridrec.testing import tiny_training_data

    class EventsPerUser(DerivedTable):
        name = "events_per_user"

        def derive(self, events, items):
            counts = events.groupby(C.USER_ID).size().rename("events").reset_index()
            return counts.assign(**{C.EVENT_TIMESTAMP: events[C.EVENT_TIMESTAMP].max()})

    def register_derived_tables(register):
        register(EventsPerUser)
        register(object)

    registry = build_registry(extra=[("tables", plugin(
        register_derived_tables=register_derived_tables))])
    assert registry.kind("derived_tables")["events_per_user"] is EventsPerUser
    assert any("is not a subclass of hybridrec.contracts.DerivedTable" in p
               for p in registry.problems)
    data = tiny_training_data(users=20, items=10, events=400)
    monkeypatch.setattr(P, "_registry", registry)
    counts = write_dataset(Dataset(events=data.events, users=data.users, items=data.items),
                           tmp_path)
    written = pd.read_parquet(tmp_path / "events_per_user.parquet")
    assert counts["events_per_user.parquet"] == data.events[C.USER_ID].nunique()
    assert written["events"].sum() == len(data.events)


def test_an_empty_or_odd_api_declaration_is_refused_and_named():
    from hybridrec.plugins import PluginInfo, _api_compatible

    empty = types.ModuleType("empty_plugin")
    empty.HYBRIDREC_PLUGIN_API = "  "  # would admit every version
    info = PluginInfo("empty", "1.0", "empty_plugin", builtin=False)
    assert not _api_compatible(info, "hybridrec-empty", empty)
    assert "which is not a version range" in info.problems[0]
    nameless = object()  # an entry point may name an object, not a module
    info = PluginInfo("nameless", "1.0", "pkg:instance", builtin=False)
    assert _api_compatible(info, "hybridrec-nameless", nameless)  # undeclared: loaded
    assert "add HYBRIDREC_PLUGIN_API" in info.problems[0] and "pkg:instance" in info.problems[0]


def _synthetic_registry(generate):
    """A registry with a ``quiz`` scenario whose synthetic data ``generate`` makes."""
    from hybridrec import SyntheticScenario

    class Quiz(SyntheticScenario):
        name = "quiz"

        def generate(self, world):
            return generate(world)

    def register_scenarios(register):
        register(Scenario(name="quiz", event_weights={"answer": 1.0},
                          positive_events=("answer",), objective=("click",)))

    def register_synthetic_scenarios(register):
        register(Quiz)

    return build_registry(extra=[("quiz", plugin(
        register_scenarios=register_scenarios,
        register_synthetic_scenarios=register_synthetic_scenarios))])


def _quiz(world, user=None, item="q1", when=None):
    import pandas as pd

    from hybridrec import columns as C

    items = pd.DataFrame({C.ITEM_ID: ["q1", "q2"], C.SCENARIO: "quiz"})
    events = pd.DataFrame({C.USER_ID: [user or world.users[C.USER_ID].iloc[0]],
                           C.ITEM_ID: [item], C.SCENARIO: "quiz", C.EVENT_TYPE: "answer",
                           C.VALUE: 1.0, C.EVENT_TIMESTAMP: [when or world.end]})
    return items, events


def test_a_plugins_synthetic_scenario_joins_the_world_and_leaves_the_rest_as_it_was(
        monkeypatch):
    import pandas as pd

    import hybridrec.plugins as P
    from hybridrec import columns as C
    from hybridrec.data.synthetic import SyntheticConfig, SyntheticDataError, generate

    config = SyntheticConfig(users=30, items=10, ads=3, events=600, end="2025-03-31")
    alone = generate(config, plugins=False)
    seen = []
    monkeypatch.setattr(P, "_registry", _synthetic_registry(
        lambda world: seen.append(world) or _quiz(world)))
    data = generate(config)
    [world] = seen
    assert (world.start, world.end) == (pd.Timestamp("2025-02-03", tz="UTC"),  # 8 weeks
                                        pd.Timestamp("2025-03-31", tz="UTC"))
    assert (world.events, world.items, world.seed, len(world.users)) == (600, 10, 0, 30)
    quiz = data.events[data.events[C.SCENARIO] == "quiz"]
    assert len(quiz) == 1 and set(data.items[C.ITEM_ID]) >= {"q1", "q2"}
    listed = data.items[data.items[C.ITEM_ID] == "q1"].iloc[0]
    assert listed["title"] == "" and pd.isna(listed["price"])  # filled in
    rest = data.events[data.events[C.SCENARIO] != "quiz"].reset_index(drop=True)
    pd.testing.assert_frame_equal(rest, alone.events.reset_index(drop=True))

    for bad, problem in ((lambda w: _quiz(w, user="someone"), "users not in the world"),
                         (lambda w: _quiz(w, item="s00001"), "events on items not in its"),
                         (lambda w: _quiz(w, when=w.start - pd.Timedelta(days=1)),
                          "outside the world's span"),
                         (lambda w: (_quiz(w)[0].assign(**{C.ITEM_ID: ["s00001", "q2"]}),
                                     _quiz(w, item="q2")[1]), "item ids taken"),
                         (lambda w: (_quiz(w)[0], _quiz(w)[1].assign(event_type="shout")),
                          r"event types \['shout'\] the scenario does not accept"),
                         (lambda w: (_quiz(w)[0], _quiz(w)[1].assign(value="a lot")),
                          "value is not a number"),
                         (lambda w: (_quiz(w)[0], _quiz(w)[1].assign(
                             **{C.EVENT_TIMESTAMP: pd.NaT})), "or at no time"),
                         (lambda w: (_quiz(w)[0].assign(**{C.EVENT_TIMESTAMP: w.end}),
                                     _quiz(w, when=w.end - pd.Timedelta(hours=1))[1]),
                          "1 events before their item is listed"),
                         (lambda w: (_quiz(w)[0], _quiz(w)[1].drop(columns=[C.VALUE])),
                          "events lack column"),
                         (lambda w: (_quiz(w)[0].assign(**{C.SCENARIO: "shop"}), _quiz(w)[1]),
                          "items of another scenario"),
                         (lambda w: (_quiz(w)[0], _quiz(w)[1].assign(mood="happy")),
                          "events carry column.s. mood, which the event log does not keep"),
                         (lambda w: None, "failed: TypeError"),
                         (lambda w: 1 / 0, "failed: ZeroDivisionError")):
        monkeypatch.setattr(P, "_registry", _synthetic_registry(bad))
        with pytest.raises(SyntheticDataError, match=problem) as error:
            generate(config)
        assert "synthetic scenario 'quiz'" in str(error.value)

    # integer ids are the world's ids as text, in both tables; the items' own columns stay
    monkeypatch.setattr(P, "_registry", _synthetic_registry(lambda w: (
        _quiz(w)[0].assign(**{C.ITEM_ID: [1, 2], "difficulty": [3, 5]}), _quiz(w, item=1)[1])))
    data = generate(config)
    assert data.events.query("scenario == 'quiz'")[C.ITEM_ID].tolist() == ["1"]
    assert data.items.set_index(C.ITEM_ID).loc["2", "difficulty"] == 5

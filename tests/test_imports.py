"""Importing the core and asking the CLI for help stay light: no torch, Feast or pandas."""

import subprocess
import sys

HEAVY = ("torch", "transformers", "feast", "pandas", "implicit", "lightgbm", "fastapi")

PROBE = """
import sys
{setup}
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY:" + ",".join(heavy))
"""


def imported_after(setup: str) -> list[str]:
    code = PROBE.format(setup=setup, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    line = out.strip().splitlines()[-1]
    assert line.startswith("HEAVY:"), out
    return [m for m in line.removeprefix("HEAVY:").split(",") if m]


def test_import_hybridrec_is_light():
    assert imported_after("import hybridrec") == []


def test_cli_help_is_light():
    setup = """
from hybridrec.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
"""
    assert imported_after(setup) == []


def test_commands_that_read_no_features_do_not_import_feast(tmp_path):
    setup = f"""
from hybridrec.cli import main
for args in (["plugins"], ["plugins", "--json"],
             ["--repo", "{tmp_path}/repo", "data", "synthetic", "--users", "20", "--items",
              "10", "--ads", "3", "--events", "500", "--end", "2025-01-01"]):
    try:
        main(args)
    except SystemExit as exit:
        assert not exit.code, exit.code
"""
    heavy = imported_after(setup)
    assert "feast" not in heavy and "torch" not in heavy
    assert (tmp_path / "repo" / "data" / "events.parquet").exists()


def test_registry_listing_is_light():
    setup = "from hybridrec.plugins import get_registry\nget_registry().scorers"
    assert imported_after(setup) == []


FEAST_PROBE = """
import sys
{setup}
import feast
from feast import FeatureStore
import feast.feature_view
import typeguard
code = feast.feature_view.FeatureView.__init__.__code__
print("CHECKED:" + str("check_argument_types_internal" in code.co_names))
print("RESTORED:" + str(typeguard.typechecked.__module__ == "typeguard"))
print("LOADER:" + type(feast.__spec__.loader).__name__)
print("TORCH:" + str("torch" in sys.modules))
"""


def feast_import(setup: str) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", FEAST_PROBE.format(setup=setup)],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


def test_feast_imported_after_hybridrec_skips_typeguard_and_torch():
    """Feast's typeguard instrumentation (seconds of start-up) and its eager torch import
    are left out once hybridrec is imported, and typeguard itself is left as it was."""
    plain = feast_import("")
    assert plain["CHECKED"] == "True"  # what Feast does on its own
    light = feast_import("import hybridrec")
    assert light == {"CHECKED": "False", "RESTORED": "True", "LOADER": plain["LOADER"],
                     "TORCH": "False"}
    probed = feast_import("import hybridrec, importlib.util\nimportlib.util.find_spec('feast')")
    assert probed == light  # looking Feast up before importing it changes nothing

"""The evaluation report: written by the real CLI from the session bundle, opened in a real
headless Chromium, and the evaluation figures behind it (intervals, buckets, baselines)."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

BLEND_RED = np.array([0xD6, 0x27, 0x28]) / 255.0


def chromium() -> str:
    """Debian's chromium; installed when absent and we are root (as CI is), else skip."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq",
                                                   "chromium"]):
            if subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode:
                break
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def report(workspace, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    result = workspace.cli("evaluate", "--bundle", "current", "--quiet", "--report",
                           str(folder))
    assert "report written to" in result.stdout
    return folder


def test_the_report_links_every_plot_it_wrote(report):
    page = (report / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert "overview.png" in images
    assert any(i.startswith("buckets-") for i in images)
    assert any(i.startswith("reliance-") for i in images)  # the learned blender says why
    import matplotlib.image

    for name in images:
        pixels = matplotlib.image.imread(report / name)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100, name
    for scenario in ("shop", "video"):
        assert f"<h2>Scenario {scenario}</h2>" in page
    assert "blend" in page and "objective@10" in page


def test_the_report_renders_in_a_headless_browser(report, tmp_path):
    browser = chromium()
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1280,2400",
         (report / "index.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.exists(), done.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    # the plots drew: the blend's red bars are on the page (no table cell uses that colour)
    red = np.all(np.abs(pixels - BLEND_RED) < 0.03, axis=-1)
    assert red.sum() > 200
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_evaluation_has_intervals_buckets_and_baselines(workspace_copy):
    result = workspace_copy.cli("evaluate", "--quiet", "--json", "--split", "leave-last",
                                "--scorer", "popularity", "--scorer", "als",
                                "--baseline-blender", "weighted", "--scenario", "video",
                                "--test-fraction", "0.2")
    out = json.loads(result.stdout)
    video = out["metrics"]["video"]
    assert {"popularity", "weighted blend", "blend"} <= set(video)
    for row in video.values():
        for metric in ("ndcg@10", "objective@10"):
            assert row[f"{metric} lo"] <= row[metric] <= row[f"{metric} hi"]
    assert out["comparison"]["video"]["best_single"] in ("popularity", "als")
    buckets = out["buckets"]["video"]
    assert set(buckets) <= {"cold", "light", "heavy"} and buckets
    assert sum(next(iter(b.values()))["users"] for b in buckets.values()) == \
        video["blend"]["users"]
    assert out["reliance"]["video"]


def test_an_unknown_baseline_blender_is_named(workspace_copy):
    result = workspace_copy.cli("evaluate", "--quiet", "--baseline-blender", "weigthed",
                                check=False)
    assert result.returncode != 0 and "unknown blender 'weigthed'" in result.stderr


def test_the_report_folder_is_created(workspace, tmp_path):
    target: Path = tmp_path / "nested" / "report"
    workspace.cli("evaluate", "--bundle", "current", "--quiet", "--report", str(target))
    assert (target / "index.html").exists()


def test_a_bundle_is_evaluated_on_its_own_split(workspace):
    result = workspace.cli("evaluate", "--bundle", "current", "--split", "random", check=False)
    assert result.returncode != 0 and "evaluated on the split it records" in result.stderr

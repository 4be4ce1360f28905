"""The OpenAPI document against the real server: Schemathesis generates requests from it
(valid and invalid, bounded in number, seeded) and checks every answer: no 5xx, each
response matching its documented schema, status and content type, invalid input refused.

Excluded: ``positive_data_acceptance``, which expects any schema-valid body to be accepted;
this API answers 422 to bodies valid in shape but not in meaning (feedback naming a request
id never served, a ``k`` above the scenario's ``max_k``), and that is documented."""

from __future__ import annotations

import subprocess

from conftest import ADMIN_TOKEN, BIN, Server

EXAMPLES = 40


def test_the_api_keeps_to_its_openapi_document(workspace_copy):
    server = Server(workspace_copy, "--refresh-seconds", "0")
    server.wait_ready()
    try:
        result = subprocess.run(
            [str(BIN / "schemathesis"), "--no-color", "run", f"{server.base}/openapi.json",
             "--checks", "all", "--exclude-checks", "positive_data_acceptance",
             "--max-examples", str(EXAMPLES), "--seed", "20261128",
             "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
             "--request-timeout", "30", "--generation-database", "none"],
            capture_output=True, text=True, timeout=600, env=workspace_copy.env,
            cwd=workspace_copy.root)
    finally:
        server.stop()
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    assert " generated, " in report and " passed" in report

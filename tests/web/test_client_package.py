"""The TypeScript side of the contract: fresh generated stubs, code that type-checks,
and the @telemesh/client package working on its own (its README's call, in Node)."""

from __future__ import annotations

import filecmp
import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from telemesh.identity.tokens import DevIssuer
from telemesh_tools.stack.process import ManagedProcess
from tests.support.harness import REPO, MeshUp
from tests.web.support import WEB, WEB_ORIGIN, npm_bin

CLIENT = WEB / "client"
GENERATED = CLIENT / "src" / "gen"


def files_under(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def test_generated_typescript_is_fresh(tools: None, tmp_path: Path) -> None:
    """web/client/src/gen is exactly what `npm run gen` makes from protos/ now."""
    done = subprocess.run(
        [str(REPO / ".venv/bin/buf"), "generate", "--output", str(tmp_path)],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    fresh = tmp_path / GENERATED.relative_to(WEB)
    assert files_under(fresh) == files_under(GENERATED), "run `npm run gen` in web/"
    stale = [
        str(p)
        for p in files_under(fresh)
        if not filecmp.cmp(fresh / p, GENERATED / p, shallow=False)
    ]
    assert not stale, f"stale generated TypeScript, run `npm run gen` in web/: {stale}"


@pytest.mark.parametrize("script", ["typecheck", "lint"])
def test_the_web_sources_type_check_and_are_formatted(tools: None, script: str) -> None:
    """`npm run typecheck` (tsc, strict) and `npm run lint` (prettier --check)."""
    done = subprocess.run(
        ["npm", "run", "--silent", script], cwd=WEB, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr


def readme_snippet() -> str:
    """The first JavaScript example in the client's README."""
    match = re.search(r"```js\n(.*?)```", (CLIENT / "README.md").read_text(), re.S)
    assert match, "web/client/README.md has no ```js example"
    return match.group(1)


def test_the_client_package_works_on_its_own(web_mesh: MeshUp, tmp_path: Path) -> None:
    """Built to JavaScript as `npm pack` builds it, installed in an app of its own, the
    README's example runs in Node against the edge."""
    package = tmp_path / "package"
    package.mkdir()
    (package / "package.json").write_bytes((CLIENT / "package.json").read_bytes())
    build = subprocess.run(
        [npm_bin("tsc"), "-p", str(CLIENT / "tsconfig.json"), "--outDir", str(package / "dist")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    # Its dependencies, as npm would install them beside it.
    (package / "node_modules").symlink_to(WEB / "node_modules")
    app = tmp_path / "app"
    (app / "node_modules" / "@telemesh").mkdir(parents=True)
    (app / "node_modules" / "@telemesh" / "client").symlink_to(package)

    token = DevIssuer(web_mesh.home).mint("p-1", "patient")
    env = {
        **os.environ,
        "TELEMESH_EDGE": web_mesh.edge_url,
        "TELEMESH_TOKEN": token,
        "NODE_EXTRA_CA_CERTS": str(web_mesh.ca_bundle),
    }
    done = subprocess.run(
        ["node", "--input-type=module", "-e", readme_snippet()],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "0 visits", done.stdout
    assert lines[1].startswith("NOT_FOUND VISIT_NOT_FOUND "), done.stdout


def test_the_web_server_names_the_edge_and_sets_a_content_policy(
    web_mesh: MeshUp, webapp: ManagedProcess
) -> None:
    with urllib.request.urlopen(f"{WEB_ORIGIN}/config.json", timeout=5) as reply:
        assert json.loads(reply.read()) == {"edgeUrl": web_mesh.edge_url}
    with urllib.request.urlopen(f"{WEB_ORIGIN}/patient.html", timeout=5) as reply:
        policy = reply.headers["Content-Security-Policy"]
        assert f"connect-src 'self' {web_mesh.edge_url}" in policy
        assert "default-src 'self'" in policy
        assert reply.headers["Cache-Control"] == "no-store"
    with pytest.raises(urllib.error.HTTPError) as listing:
        urllib.request.urlopen(f"{WEB_ORIGIN}/assets/", timeout=5)
    assert listing.value.code == 404

"""The whole reference: the pages from the protos and the allow-list, written to a folder
or compared with one."""

from __future__ import annotations

from pathlib import Path

from telemesh_tools.apidocs import image, markdown, model
from telemesh_tools.apidocs.callers import callers
from telemesh_tools.mesh import allowlist

REPO = Path(__file__).resolve().parent.parent.parent
DOCS = REPO / "docs" / "api"


def pages(repo: Path = REPO) -> dict[str, str]:
    """File name -> content of every page (the index, then one per package)."""
    contract = model.read(image.build(repo))
    who = callers(allowlist.load(repo / "mesh" / "allowlist.yaml"))
    result = {markdown.INDEX: markdown.index_page(contract, who)}
    for package in contract.packages:
        result[package.page] = markdown.package_page(contract, package, who)
    return result


def write(generated: dict[str, str], out: Path) -> None:
    """Writes the pages into `out` and removes any other Markdown page there."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.md"):
        if stale.name not in generated:
            stale.unlink()
    for name, text in sorted(generated.items()):
        target = out / name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)


def stale(generated: dict[str, str], out: Path) -> list[str]:
    """The pages in `out` that differ from `generated`, are missing, or are extra."""
    present = {p.name for p in out.glob("*.md")} if out.is_dir() else set()
    wrong = [
        name
        for name, text in generated.items()
        if name not in present or (out / name).read_text() != text
    ]
    return sorted(wrong + [name for name in present if name not in generated])

"""`python -m telemesh_tools.apidocs [--out DIR] [--check]`: writes the API reference (by
default into docs/api/), or with --check says whether it is up to date (exit 1 if not)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from telemesh_tools.apidocs.generate import DOCS, REPO, pages, stale, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telemesh_tools.apidocs", description=__doc__)
    parser.add_argument("--out", type=Path, default=DOCS, help="folder of the pages")
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    generated = pages(REPO)
    if args.check:
        wrong = stale(generated, args.out)
        if wrong:
            print(f"stale API reference ({', '.join(wrong)}): run `make docs`", file=sys.stderr)
            return 1
        print(f"API reference up to date ({len(generated)} pages)")
        return 0
    write(generated, args.out)
    print(f"API reference: {len(generated)} pages in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

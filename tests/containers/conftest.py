"""The image, built once per test session from a Debian base image (issue 17).

The tests skip, saying why, where podman, runc, catatonit or debootstrap is missing or
where they cannot run as root. The first build on a machine runs debootstrap (about a
minute); later ones reuse the base image from podman's storage or from its cached
tarball in /var/tmp/telemesh-images.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from telemesh.config import SERVICES
from tests.containers import podman
from tests.support.harness import create_pg_database, drop_pg_database


@pytest.fixture(scope="session")
def image() -> podman.BuiltImage:
    reason = podman.missing()
    if reason is not None:
        pytest.skip(reason)
    with podman.machine_lock():  # one build at a time on this machine
        built = podman.build_image()
    print(f"\nimage {built.name} ({built.id[:12]}) from {built.base}: {built.size_mb} MB")
    return built


@pytest.fixture
def databases() -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database for each service (its URL, by service), dropped after."""
    urls: dict[str, str] = {}
    try:
        for service in SERVICES:
            urls[service] = create_pg_database(f"ctr_{service}")
        yield urls
    finally:
        for url in urls.values():
            drop_pg_database(url)

"""The image, built once per test session from a Debian base image (issue 17).

The tests skip, saying why, where podman, runc, catatonit or debootstrap is missing or
where they cannot run as root. The first build on a machine runs debootstrap (about a
minute); later ones reuse the base image from podman's storage or from its cached
tarball in /var/tmp/telemesh-images.
"""

from __future__ import annotations

import pytest

from tests.containers import podman


@pytest.fixture(scope="session")
def image() -> podman.BuiltImage:
    reason = podman.missing()
    if reason is not None:
        pytest.skip(reason)
    with podman.machine_lock():  # one build at a time on this machine
        built = podman.build_image()
    print(f"\nimage {built.name} ({built.id[:12]}) from {built.base}: {built.size_mb} MB")
    return built

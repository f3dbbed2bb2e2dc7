"""Package layout that pyproject.toml cannot say: `telemesh` is one namespace package
in two folders, the runtime (./telemesh) and the generated stubs (gen/python/telemesh);
beside it the services (svc_*) and the tools (telemesh_tools).
Everything else about the package is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

runtime = find_namespace_packages(
    where=".", include=["telemesh", "telemesh.*", "telemesh_tools", "telemesh_tools.*", "svc_*"]
)
generated = find_namespace_packages(where="gen/python", include=["telemesh.*"])

setup(
    packages=runtime + generated,
    package_dir={name: "gen/python/" + name.replace(".", "/") for name in generated},
)

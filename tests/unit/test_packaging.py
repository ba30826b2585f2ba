"""pyproject.toml maps the repository's folders into one import package, ``pcaq``: the list of packages
there must name every folder of code, or a wheel ships without it (an editable install would not show it)."""

from __future__ import annotations

import tomllib

from tests.support import REPO


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def _folder_of(package: str, package_dir: dict[str, str]) -> str:
    """The folder that setuptools builds ``package`` from (the longest mapped prefix wins)."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in package_dir:
            return "/".join([package_dir[prefix], *parts[cut:]])
    raise AssertionError(f"{package} is under no mapped folder")


def test_every_code_folder_is_a_listed_package():
    config = _setuptools()
    listed = {_folder_of(p, config["package-dir"]): p for p in config["packages"]}
    on_disk = {
        str(init.parent.relative_to(REPO))
        for top in config["package-dir"].values()
        for init in (REPO / top).rglob("__init__.py")
    }
    assert on_disk == set(listed), (
        f"folders not listed: {on_disk - set(listed)}; listed, not found: {set(listed) - on_disk}"
    )


def test_one_import_package():
    config = _setuptools()
    assert {p.split(".")[0] for p in config["packages"]} == {"pcaq"}
    assert all(name == "pcaq" or name.startswith("pcaq.") for name in config["package-dir"])

"""Reproducible installs: every dependency is pinned, with hashes, in the lock the Makefile and the
Dockerfile install from (`make lock` regenerates them)."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement

from dialler.config import PROJECT_ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._\-]*)(\[[^\]]*\])?==([^\s\\;]+)", re.M)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: str) -> dict[str, str]:
    return {canonical(name): version for name, _, version in PIN.findall((PROJECT_ROOT / lock).read_text())}


def declared(*, dev: bool) -> list[Requirement]:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"]) + (project["optional-dependencies"]["dev"] if dev else [])
    return [Requirement(spec) for spec in names]


@pytest.mark.parametrize(("lock", "dev"), [("requirements.lock", False), ("requirements-dev.lock", True)])
def test_every_declared_dependency_is_pinned_within_its_range(lock: str, dev: bool) -> None:
    pinned = pins(lock)

    for requirement in declared(dev=dev):
        name = canonical(requirement.name)
        assert name in pinned, f"{requirement.name} is not in {lock}: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, outside {requirement.specifier}: run `make lock`"
        )


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_every_pin_carries_a_hash(lock: str) -> None:
    text = (PROJECT_ROOT / lock).read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.strip())

    unhashed = [block.split()[0] for block in blocks if "==" in block and "--hash=sha256:" not in block]
    assert unhashed == []


def test_the_image_and_make_install_from_the_locks() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    makefile = (PROJECT_ROOT / "Makefile").read_text()

    assert "pip install --no-cache-dir --require-hashes -r requirements.lock" in dockerfile
    assert "pip install --no-cache-dir --no-deps ." in dockerfile
    assert "pip install --require-hashes -r requirements-dev.lock" in makefile
    assert "pip install --no-deps -e ." in makefile

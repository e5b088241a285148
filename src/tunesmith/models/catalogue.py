"""The built-in catalogue of named base models (``catalogue.yaml``) and where their files are installed."""

from __future__ import annotations

from functools import cache
from importlib import metadata, resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tunesmith.errors import TunesmithError
from tunesmith.config.yaml_load import load_table


class CatalogueError(TunesmithError):
    """A named base model that is not installed (the message says how to install it)."""


class Entry(BaseModel):
    """One named base: which pip package ships its GGUF file, and what it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    package: str
    version: str
    file: str
    sha256: str
    licence: str
    parameters: str
    size: str
    architecture: str
    template: str
    install: str


@cache
def entries() -> dict[str, Entry]:
    """Every named base, by name."""
    raw = load_table((resources.files("tunesmith.models") / "catalogue.yaml").read_text("utf-8"))
    return {name: Entry(name=name, **spec) for name, spec in raw.items()}


def get(name: str) -> Entry | None:
    return entries().get(name)


def installed(entry: Entry) -> bool:
    """Whether the entry's package is installed at the catalogue's version with its file present."""
    try:
        locate(entry)
    except CatalogueError:
        return False
    return True


def locate(entry: Entry) -> Path:
    """The installed GGUF file of ``entry``; a missing or other-version package says which command installs it."""
    what = f"base_model '{entry.name}' ({entry.description}; {entry.licence}, {entry.size})"
    try:
        dist = metadata.distribution(entry.package)
    except metadata.PackageNotFoundError:
        raise CatalogueError(f"{what} is not installed; install it with: {entry.install}") from None
    if dist.version != entry.version:
        raise CatalogueError(f"{what}: {entry.package} {dist.version} is installed but the catalogue expects "
                             f"{entry.version}; install it with: {entry.install}")
    path = Path(str(dist.locate_file(entry.file)))
    if not path.is_file():
        raise CatalogueError(f"{what}: {entry.package} {dist.version} is installed but {path} is missing; "
                             f"reinstall it with: {entry.install} --force-reinstall")
    return path

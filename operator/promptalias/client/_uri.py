"""Prompt URIs: `prompts:/name/alias`, `prompts:/name@alias`, `prompts:/name/3`."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: the client must import fast
if TYPE_CHECKING:
    from typing import Final

SCHEME: Final = "prompts:/"
LATEST: Final = "latest"


class InvalidPromptURIError(ValueError):
    """The string is not a prompt URI this client understands."""


class PromptRef:
    """What a URI names: a prompt and either an alias or a pinned version (immutable, hashable)."""

    __slots__ = ("alias", "name", "version")

    name: str
    alias: str | None
    version: int | None

    def __init__(self, name: str, alias: str | None = None, version: int | None = None) -> None:
        if (alias is None) == (version is None):
            raise ValueError("a PromptRef names exactly one of alias or version")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "alias", alias)
        object.__setattr__(self, "version", version)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("PromptRef is immutable")

    def _key(self) -> tuple[str, str | None, int | None]:
        return (self.name, self.alias, self.version)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PromptRef) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"PromptRef({self.uri!r})"

    @property
    def uri(self) -> str:
        """The canonical form: `prompts:/name@alias` or `prompts:/name/3`."""
        if self.alias is not None:
            return f"{SCHEME}{self.name}@{self.alias}"
        return f"{SCHEME}{self.name}/{self.version}"

    @property
    def key(self) -> str:
        """File name of an alias projection, `<name>.<alias>.json` (docs/contracts.md)."""
        if self.alias is None:
            raise ValueError("a pinned version has no projection file name")
        return f"{self.name}.{self.alias}.json"


def parse_uri(uri: str) -> PromptRef:
    """Parse the three accepted forms.

    - `prompts:/name@alias`  the MLflow form (an alias);
    - `prompts:/name/alias`  the form in MLflow's deployment guide, refused by MLflow 3.17 itself;
    - `prompts:/name/3`      a pinned, immutable version (a suffix made only of digits).
    `latest` is accepted as an alias (`prompts:/name@latest`): it is never projected (MLflow reserves the
    name), so it resolves through MLflow and then the last-known-good copy.
    """
    if not isinstance(uri, str) or not uri.startswith(SCHEME):
        raise InvalidPromptURIError(
            f"{uri!r} is not a prompt URI; use prompts:/<name>@<alias>, prompts:/<name>/<alias> "
            "or prompts:/<name>/<version>"
        )
    rest = uri[len(SCHEME) :]
    if "/" in rest:
        name, _, suffix = rest.partition("/")
        if not name or not suffix or "/" in suffix or "@" in suffix or "@" in name:
            raise InvalidPromptURIError(f"{uri!r}: expected prompts:/<name>/<alias or version>")
        if suffix.isascii() and suffix.isdigit():
            version = int(suffix)
            if version < 1:
                raise InvalidPromptURIError(f"{uri!r}: prompt versions start at 1")
            return PromptRef(name, version=version)
        return PromptRef(name, alias=suffix)
    name, at, alias = rest.rpartition("@")
    if not at or not name or not alias:
        raise InvalidPromptURIError(
            f"{uri!r} names no alias or version; use prompts:/{rest or '<name>'}@<alias> "
            f"or prompts:/{rest or '<name>'}/<version>"
        )
    if "@" in name:
        raise InvalidPromptURIError(f"{uri!r}: a prompt name cannot contain '@'")
    return PromptRef(name, alias=alias)

"""The `Prompt` result object and MLflow-compatible `{{var}}` formatting."""

from __future__ import annotations

import json
import re

from promptalias.client._document import canonical_json, template_digest

TYPE_CHECKING = False  # typing is not imported at run time: the client must import fast
if TYPE_CHECKING:
    from typing import Any, Final, TypeAlias

    Template: TypeAlias = str | list[dict[str, Any]]

# Same pattern as mlflow.prompt.constants.PROMPT_TEMPLATE_VARIABLE_PATTERN (MLflow 3.x).
VARIABLE_PATTERN: Final = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)*)\s*\}\}")

BUCKETS: Final = 10_000
BASELINE: Final = "baseline"
CANDIDATE: Final = "candidate"


class PromptFormatError(ValueError):
    """`format()` was called without values for some template variables."""

    def __init__(self, missing: set[str], uri: str) -> None:
        self.missing = frozenset(missing)
        super().__init__(
            f"Missing variables for {uri}: {sorted(missing)}. To partially format the prompt, "
            "set `allow_partial=True`."
        )


def routing_bucket(name: str, alias: str, key: object) -> int:
    """The A/B bucket (0..9999) of a routing key: sha256(f"{name}:{alias}:{key}") as a big-endian
    integer of its first 8 bytes, modulo 10000. `alias` is the baseline alias the app asked for.

    A key lands in the candidate when bucket < weight * 100, so raising the weight only ever moves
    keys from baseline to candidate (never back), and every process agrees without talking.
    """
    import hashlib  # already loaded after the first document; a dict lookup here

    digest = hashlib.sha256(f"{name}:{alias}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def _is_jinja(template: Template) -> bool:
    if isinstance(template, str):
        return "{%" in template and "%}" in template
    return any(
        isinstance(m.get("content"), str) and "{%" in m["content"] and "%}" in m["content"] for m in template
    )


def _substitute(text: str, values: dict[str, Any]) -> str:
    # One pass: a value that itself contains "{{x}}" is not expanded again (MLflow substitutes key
    # by key, so there a value could be re-expanded by a later key; we treat values as data).
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(values[name]) if name in values else match.group(0)

    return VARIABLE_PATTERN.sub(replace, text)


class Prompt:
    """One resolved prompt version, immutable and safe to share between threads.

    `template`, `response_format`, `model_config` and `tags` return fresh copies, so a caller that
    appends to the message list never changes what the next request gets.
    """

    __slots__ = (
        "_candidate",
        "_chat_json",
        "_model_config_json",
        "_response_format_json",
        "_tags",
        "_text",
        "_threshold",
        "_variables",
        "alias",
        "arm",
        "digest",
        "name",
        "source",
        "updated",
        "uri",
        "version",
    )

    name: str
    alias: str | None
    version: int
    uri: str
    digest: str
    arm: str | None
    updated: str | None
    source: str
    _text: str | None
    _chat_json: str | None
    _response_format_json: str | None
    _model_config_json: str | None
    _tags: dict[str, str]
    _variables: frozenset[str] | None
    _candidate: Prompt | None
    _threshold: int

    def __init__(
        self,
        name: str,
        version: int,
        template: Template,
        *,
        alias: str | None = None,
        uri: str | None = None,
        digest: str | None = None,
        response_format: dict[str, Any] | None = None,
        model_config: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        arm: str | None = None,
        updated: str | None = None,
        source: str = "inline",
    ) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "name", name)
        setattr_(self, "alias", alias)
        setattr_(self, "version", int(version))
        setattr_(
            self,
            "uri",
            uri or (f"prompts:/{name}@{alias}" if alias is not None else f"prompts:/{name}/{version}"),
        )
        setattr_(self, "digest", digest or template_digest(template))
        setattr_(self, "arm", arm)
        setattr_(self, "updated", updated)
        setattr_(self, "source", source)
        if isinstance(template, str):
            setattr_(self, "_text", template)
            setattr_(self, "_chat_json", None)
        else:
            setattr_(self, "_text", None)
            setattr_(self, "_chat_json", json.dumps(template))
        setattr_(
            self, "_response_format_json", None if response_format is None else json.dumps(response_format)
        )
        setattr_(self, "_model_config_json", None if model_config is None else json.dumps(model_config))
        setattr_(self, "_tags", dict(tags or {}))
        setattr_(self, "_variables", None)
        setattr_(self, "_candidate", None)
        setattr_(self, "_threshold", 0)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("Prompt is immutable")

    def __delattr__(self, key: str) -> None:
        raise AttributeError("Prompt is immutable")

    # ----------------------------------------------------------------------------------------------
    # Read-only views
    @property
    def template(self) -> Template:
        """The text, or a fresh list of chat messages ({"role", "content"})."""
        if self._text is not None:
            return self._text
        assert self._chat_json is not None
        chat: list[dict[str, Any]] = json.loads(self._chat_json)
        return chat

    @property
    def is_text_prompt(self) -> bool:
        return self._text is not None

    @property
    def response_format(self) -> dict[str, Any] | None:
        return None if self._response_format_json is None else dict(json.loads(self._response_format_json))

    @property
    def model_config(self) -> dict[str, Any] | None:
        return None if self._model_config_json is None else dict(json.loads(self._model_config_json))

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._tags)

    @property
    def variables(self) -> frozenset[str]:
        """Names of the `{{var}}` placeholders, found the way MLflow finds them."""
        found = self._variables
        if found is None:
            text = self._text if self._text is not None else self._chat_json
            found = frozenset(VARIABLE_PATTERN.findall(text or ""))
            object.__setattr__(self, "_variables", found)
        return found

    @property
    def experiment_weight(self) -> float:
        """Percentage of routing keys sent to the candidate (0 when there is no experiment)."""
        return self._threshold / 100

    # ----------------------------------------------------------------------------------------------
    # Formatting (mlflow.entities.model_registry.PromptVersion.format semantics)
    def format(self, **kwargs: Any) -> Template | Prompt:
        """Fill `{{var}}` placeholders: a string for text prompts, a new message list for chat.

        As in MLflow: extra values are ignored; a missing value raises PromptFormatError unless
        `allow_partial=True`, which returns a new Prompt with the given values filled in. Templates with
        Jinja2 control flow (`{% ... %}`) are rendered with Jinja2 (imported only then; sandboxed unless
        `use_jinja_sandbox=False`), where missing values render empty. The two flags are taken from
        the keyword arguments, so `format(**values)` type-checks with any `dict[str, T]`.
        """
        allow_partial = bool(kwargs.pop("allow_partial", False))
        use_jinja_sandbox = bool(kwargs.pop("use_jinja_sandbox", True))
        template = self.template
        if _is_jinja(template):
            return _render_jinja(template, kwargs, sandbox=use_jinja_sandbox)
        formatted: Template
        if isinstance(template, str):
            formatted = _substitute(template, kwargs)
        else:
            formatted = [
                {
                    "role": message["role"],
                    "content": (
                        _substitute(message["content"], kwargs)
                        if isinstance(message.get("content"), str)
                        else message.get("content")
                    ),
                }
                for message in template
            ]
        missing = self.variables - kwargs.keys()
        if missing:
            if not allow_partial:
                raise PromptFormatError(set(missing), self.uri)
            return self._replace_template(formatted)
        return formatted

    def format_text(self, **kwargs: Any) -> str:
        """`format()` for a text prompt, typed as `str` (TypeError for a chat prompt)."""
        if self._text is None:
            raise TypeError(f"{self.uri} is a chat prompt; use format_messages()")
        result = self.format(**kwargs)
        assert isinstance(result, str)
        return result

    def format_messages(self, **kwargs: Any) -> list[dict[str, Any]]:
        """`format()` for a chat prompt, typed as a message list (TypeError for a text prompt)."""
        if self._text is not None:
            raise TypeError(f"{self.uri} is a text prompt; use format_text()")
        result = self.format(**kwargs)
        assert isinstance(result, list)
        return result

    def to_single_brace_format(self) -> Template:
        """`{{var}}` → `{var}` (LangChain-style templates), like MLflow's method of the same name."""

        def single(text: str) -> str:
            return VARIABLE_PATTERN.sub(lambda m: "{" + m.group(1) + "}", text)

        template = self.template
        if isinstance(template, str):
            return single(template)
        return [
            {**m, "content": single(m["content"]) if isinstance(m.get("content"), str) else m.get("content")}
            for m in template
        ]

    def _replace_template(self, template: Template) -> Prompt:
        # The digest keeps naming the source version: a partial format is derived from it.
        return Prompt(
            self.name,
            self.version,
            template,
            alias=self.alias,
            uri=self.uri,
            digest=self.digest,
            response_format=self.response_format,
            model_config=self.model_config,
            tags=self._tags,
            arm=self.arm,
            updated=self.updated,
            source=self.source,
        )

    # ----------------------------------------------------------------------------------------------
    # A/B routing
    def route(self, key: object) -> Prompt:
        """The arm for `key`: this prompt (baseline) or the experiment's candidate."""
        candidate = self._candidate
        if candidate is None or self._threshold <= 0:
            return self
        assert self.alias is not None
        if routing_bucket(self.name, self.alias, key) < self._threshold:
            return candidate
        return self

    # ----------------------------------------------------------------------------------------------
    def _identity(self) -> tuple[str, str | None, int, str, str | None, int, str | None]:
        cand = self._candidate
        return (
            self.name,
            self.alias,
            self.version,
            self.digest,
            self.arm,
            self._threshold,
            cand.digest if cand is not None else None,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Prompt) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        arm = f", arm={self.arm}" if self.arm else ""
        return f"Prompt(uri={self.uri!r}, version={self.version}{arm}, digest={self.digest[:19]}…)"


def _render_jinja(template: Template, values: dict[str, Any], *, sandbox: bool) -> Template:
    try:
        from jinja2 import Environment, Undefined  # optional, only for Jinja templates
        from jinja2.sandbox import SandboxedEnvironment
    except ImportError as exc:
        raise ImportError(
            "this prompt is a Jinja2 template; install Jinja2 (pip install jinja2) to format it"
        ) from exc
    env = (SandboxedEnvironment if sandbox else Environment)(undefined=Undefined)
    if isinstance(template, str):
        return env.from_string(template).render(**values)
    return [
        {"role": m["role"], "content": env.from_string(m.get("content", "")).render(**values)}
        for m in template
    ]


def prompt_from_document(doc: dict[str, Any], *, source: str, pinned: bool = False) -> Prompt:
    """Build the Prompt (and the candidate of an experiment) from a validated projection document."""
    name = doc["name"]
    experiment = None if pinned else doc.get("experiment")
    alias = None if pinned else doc["alias"]
    prompt = Prompt(
        name,
        doc["version"],
        doc["template"],
        alias=alias,
        uri=None if pinned else doc.get("uri") or f"prompts:/{name}@{alias}",
        digest=doc.get("digest"),
        response_format=doc.get("response_format"),
        model_config=doc.get("model_config"),
        tags=doc.get("tags") or {},
        arm=BASELINE if experiment else None,
        updated=doc.get("updated"),
        source=source,
    )
    if experiment:
        cand = experiment["candidate"]
        candidate = Prompt(
            name,
            cand["version"],
            cand["template"],
            alias=cand["alias"],
            uri=cand.get("uri") or f"prompts:/{name}@{cand['alias']}",
            digest=cand.get("digest"),
            response_format=cand.get("response_format"),
            model_config=cand.get("model_config"),
            tags=doc.get("tags") or {},
            arm=CANDIDATE,
            updated=doc.get("updated"),
            source=source,
        )
        object.__setattr__(prompt, "_candidate", candidate)
        object.__setattr__(prompt, "_threshold", round(float(experiment["weight"]) * (BUCKETS // 100)))
    return prompt


__all__ = [
    "BASELINE",
    "CANDIDATE",
    "Prompt",
    "PromptFormatError",
    "canonical_json",
    "prompt_from_document",
    "routing_bucket",
]

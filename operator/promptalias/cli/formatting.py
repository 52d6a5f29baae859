"""What the `promptalias` commands print: kubectl-style tables, ages, the Git change, template diffs.

Pure functions over objects as the apiserver returns them (plain dicts), tested without a cluster.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from promptalias.reconcile.gitops import GitOpsOwner
from promptalias.reconcile.timestamps import format_timestamp, parse_timestamp
from promptalias.vocabulary import API_VERSION, OWNER_TAG_PREFIX, is_internal_tag

if TYPE_CHECKING:
    from promptalias.registry import PromptVersion

FOLLOW: Final = "follow"
NONE: Final = "<none>"
GET_HEADERS: Final = ("NAMESPACE", "NAME", "PROMPT", "ALIAS", "DESIRED", "RESOLVED", "READY", "REASON", "AGE")
HISTORY_HEADERS: Final = ("TIME", "REASON", "FROM→TO", "ACTOR", "MESSAGE")
VERSION_HEADERS: Final = ("VERSION", "CREATED", "ALIASES", "TAGS", "MESSAGE")
OWNER_HEADERS: Final = ("ALIAS", "VERSION", "MANAGED BY")


# ---- time and tables ----------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """kubectl's AGE format (k8s.io/apimachinery/pkg/util/duration.HumanDuration)."""
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        return _two_units(minutes, "m", secs % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        return _two_units(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _two_units(hours // 24, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        return _two_units(hours // 24 // 365, "y", (hours // 24) % 365, "d")
    return f"{hours // 24 // 365}y"


def _two_units(major: int, major_unit: str, minor: int, minor_unit: str) -> str:
    """Two units as kubectl writes them: "3m20s", or "3m" when the minor part is zero."""
    return f"{major}{major_unit}{minor}{minor_unit}" if minor else f"{major}{major_unit}"


def age(value: Any, now: datetime) -> str:
    stamp = parse_timestamp(value)
    return "<unknown>" if stamp is None else human_duration((now - stamp).total_seconds())


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns as kubectl prints them: left-aligned, three spaces apart, no trailing blanks."""
    table = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = ["   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in table]
    return "\n".join(lines) + "\n"


def dig(obj: Mapping[str, Any], *path: str) -> Any:
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def cell(value: Any) -> str:
    """A table cell: <none> for a missing or empty value."""
    return NONE if value is None or value == "" else str(value)


def find_condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in dig(obj, "status", "conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            return cond
    return None


def alias_row(obj: Mapping[str, Any], now: datetime) -> list[str]:
    """One PromptAlias in GET_HEADERS order."""
    ready = find_condition(obj, "Ready")
    version = dig(obj, "spec", "version")
    return [
        cell(dig(obj, "metadata", "namespace")),
        cell(dig(obj, "metadata", "name")),
        cell(dig(obj, "spec", "prompt")),
        cell(dig(obj, "spec", "alias")),
        FOLLOW if version is None else str(version),
        cell(dig(obj, "status", "resolvedVersion")),
        str(ready.get("status", "Unknown")) if ready else "Unknown",
        cell(ready.get("reason")) if ready else NONE,
        age(dig(obj, "metadata", "creationTimestamp"), now),
    ]


def alias_table(items: Sequence[Mapping[str, Any]], now: datetime, *, all_namespaces: bool) -> str:
    """The `get` table; like kubectl, the NAMESPACE column only with --all-namespaces."""
    ordered = sorted(
        items, key=lambda o: (str(dig(o, "metadata", "namespace")), str(dig(o, "metadata", "name")))
    )
    rows = [alias_row(obj, now) for obj in ordered]
    if all_namespaces:
        return render_table(GET_HEADERS, rows)
    return render_table(GET_HEADERS[1:], [row[1:] for row in rows])


def move(previous: Any, version: Any) -> str:
    """FROM→TO of a history entry; - is no version."""
    return f"{'-' if previous is None else previous}→{'-' if version is None else version}"


def history_table(history: Sequence[Mapping[str, Any]]) -> str:
    """status.history (oldest first, as stored) in HISTORY_HEADERS order."""
    rows = [
        [
            cell(entry.get("time")),
            cell(entry.get("reason")),
            move(entry.get("previousVersion"), entry.get("version")),
            cell(entry.get("actor")),
            " ".join(str(entry.get("message") or "").split()),
        ]
        for entry in history
    ]
    return render_table(HISTORY_HEADERS, rows)


# ---- the Git change (the detection: reconcile/gitops.py) ---------------------------------------


def git_change(obj: Mapping[str, Any], target: int, owner: GitOpsOwner) -> str:
    """The change to make in Git instead of a live patch: a YAML snippet, with comments."""
    name = dig(obj, "metadata", "name")
    namespace = dig(obj, "metadata", "namespace")
    current = dig(obj, "spec", "version")
    if owner.kind == "HelmRelease":
        where = (
            f"# In the values of HelmRelease {owner.namespace or '<namespace>'}/{owner.name}, change the "
            "value that renders\n# spec.version of this PromptAlias so that the rendered object reads:\n"
        )
    else:
        where = "# In the manifest of this PromptAlias in Git, set spec.version:\n"
    header = (
        f"# PromptAlias {namespace}/{name} is applied from Git by {owner}; a live patch would be\n"
        "# reverted at the next sync, so make the rollback a Git change:\n" + where
    )
    was = f"  # was {current}" if current is not None else ""
    body = (
        f"apiVersion: {API_VERSION}\n"
        "kind: PromptAlias\n"
        "metadata:\n"
        f"  name: {name}\n"
        f"  namespace: {namespace}\n"
        "spec:\n"
        f"  version: {target}{was}\n"
    )
    footer = f"# then commit, push, and sync: {owner.sync_hint}\n"
    return header + body + footer


# ---- templates and versions ----------------------------------------------------------------------


def template_lines(
    template: str | Sequence[Mapping[str, Any]],
    response_format: Mapping[str, Any] | None = None,
    model_config: Mapping[str, Any] | None = None,
) -> list[str]:
    """A prompt version as diffable lines: text as is, chat messages under `[role]` headers, then
    response_format and model_config as sorted JSON when present."""
    lines: list[str] = []
    if isinstance(template, str):
        lines.extend(template.splitlines())
    else:
        for message in template:
            lines.append(f"[{message.get('role')}]")
            lines.extend(str(message.get("content", "")).splitlines())
    for title, extra in (("response_format", response_format), ("model_config", model_config)):
        if extra:
            lines.extend(["", f"[{title}]", *json.dumps(extra, indent=2, sort_keys=True).splitlines()])
    return [line + "\n" for line in lines]


def unified_diff(old_label: str, old: Sequence[str], new_label: str, new: Sequence[str]) -> str:
    return "".join(difflib.unified_diff(list(old), list(new), fromfile=old_label, tofile=new_label))


def aliases_by_version(aliases: Mapping[str, int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        found.setdefault(int(version), []).append(alias)
    return found


def owner_text(tag_value: str | None) -> str:
    """The MLflow owner tag ({cluster, namespace, name}) as cluster/namespace/name."""
    if not tag_value:
        return "-"
    try:
        data = json.loads(tag_value)
        return f"{data['cluster']}/{data['namespace']}/{data['name']}"
    except (ValueError, KeyError, TypeError):
        return tag_value


def user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Version tags without promptalias' own bookkeeping (audit and owner marks)."""
    return {key: value for key, value in tags.items() if not is_internal_tag(key)}


def versions_table(
    versions: Sequence[PromptVersion], aliases: Mapping[str, int], tags: Mapping[str, str]
) -> str:
    """Versions (newest first) with the aliases on each; then who manages each alias."""
    by_version = aliases_by_version(aliases)
    rows = [
        [
            str(v.version),
            format_timestamp(v.created_at),
            ",".join(by_version.get(v.version, [])) or "-",
            ",".join(f"{k}={val}" for k, val in sorted(user_tags(v.tags).items())) or "-",
            " ".join((v.commit_message or "").split()) or "-",
        ]
        for v in sorted(versions, key=lambda v: v.version, reverse=True)
    ]
    text = render_table(VERSION_HEADERS, rows)
    if aliases:
        owners = [
            [alias, str(version), owner_text(tags.get(OWNER_TAG_PREFIX + alias))]
            for alias, version in sorted(aliases.items())
        ]
        text += "\n" + render_table(OWNER_HEADERS, owners)
    return text


def versions_document(
    prompt: str, versions: Sequence[PromptVersion], aliases: Mapping[str, int], tags: Mapping[str, str]
) -> dict[str, Any]:
    """`versions -o json|yaml`: the same facts as `versions_table`, newest version first."""
    by_version = aliases_by_version(aliases)
    return {
        "prompt": prompt,
        "aliases": {
            alias: {"version": version, "managedBy": owner_text(tags.get(OWNER_TAG_PREFIX + alias))}
            for alias, version in sorted(aliases.items())
        },
        "versions": [
            {
                "version": v.version,
                "created": format_timestamp(v.created_at),
                "aliases": by_version.get(v.version, []),
                "tags": dict(sorted(user_tags(v.tags).items())),
                "message": v.commit_message,
            }
            for v in sorted(versions, key=lambda v: v.version, reverse=True)
        ],
    }


def output(data: Any, fmt: str) -> None:
    """Print `data` as -o json or -o yaml asks."""
    if fmt == "json":
        print(json.dumps(data, indent=2, sort_keys=False))
    else:
        import yaml

        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")


def ready_text(obj: Mapping[str, Any]) -> str:
    """The Ready condition in one line, for messages."""
    ready = find_condition(obj, "Ready")
    if ready is None:
        return "Ready is not reported yet"
    return f"Ready={ready.get('status')} {ready.get('reason')}: {ready.get('message')}"

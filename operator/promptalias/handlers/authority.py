"""The tenancy checks the write sites call: gathers claims from the World, decides with
reconcile/tenancy.py (pure). Each write site makes one call and refuses before touching MLflow."""

from __future__ import annotations

from promptalias.handlers.state import World
from promptalias.reconcile.registry import KnownRegistry, RegistryKey
from promptalias.reconcile.tenancy import (
    AliasClaim,
    Authority,
    Refusal,
    WriteAction,
    authorize_write,
    write_authority,
)


def authority_of(world: World, registry: RegistryKey, namespace: str, prompt: str) -> Authority:
    """The write authority `namespace` has over `prompt` through the registry object `registry`."""
    known = world.registries.get(registry)
    if known is None:
        return Authority.NONE
    return write_authority(known.spec, namespace, world.namespaces.get(namespace), prompt)


def alias_claims(world: World, endpoint: str, prompt: str, alias: str) -> list[AliasClaim]:
    """Every live PromptAlias on (endpoint, prompt, alias), pinned or following, with its authority."""
    claims = []
    for uid in world.table.uids_where(endpoint=endpoint, prompt=prompt, alias=alias):
        entry = world.aliases[uid]
        if entry.deleting:
            continue
        claims.append(
            AliasClaim(
                namespace=entry.namespace,
                name=entry.name,
                uid=entry.uid,
                created=entry.created,
                authority=authority_of(world, entry.registry, entry.namespace, prompt),
                pinned=entry.writes,
            )
        )
    return claims


def refuse_write(
    world: World, known: KnownRegistry, action: WriteAction, *, namespace: str, prompt: str, alias: str
) -> Refusal | None:
    """Why `namespace` may not make this write through `known`, or None when it may."""
    return authorize_write(
        action,
        namespace=namespace,
        prompt=prompt,
        alias=alias,
        registry=str(known.key),
        authority=authority_of(world, known.key, namespace, prompt),
        claims=alias_claims(world, known.endpoint, prompt, alias),
    )

"""kopf's diff-base storage, kept out of the apiserver.

kopf remembers the last handled state of every object (by default in an annotation) to tell
create/update/resume causes apart and to hand diffs to `on.update`/`on.field` handlers. This
operator registers none of those: its changing handlers are `on.delete` only, which kopf detects by
`deletionTimestamp`, and everything else reads the body on `on.event`. Storing that state anyway cost
one PATCH per spec change, racing the reconcile pass's own status write on the same object (two
writes at once on one key: the apiserver retries one), plus one more watch event for every
PromptAlias change (docs/benchmarks.md, "What the numbers say", session 7).
"""

from __future__ import annotations

import kopf


class NoDiffBase(kopf.DiffBaseStorage):
    """Every body is its own last handled state: kopf sees no changes and writes nothing.

    Deletion is still seen (it is read from `deletionTimestamp`, not from a diff), and so are
    finalizers. Not for operators with `on.create`, `on.update`, `on.resume` or `on.field` handlers:
    they would never fire.
    """

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return self.build(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None

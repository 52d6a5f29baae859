"""Where a prompt can come from: projected files, the sidecar, MLflow (REST), a last-known-good copy.

Stdlib only; `http.client` / `urllib.request` are imported on first network use, not at import time.
Every source answers `fetch(ref) -> document` or raises `SourceMiss` with a reason for the error message.
"""

from __future__ import annotations

import json
import os

from promptalias.client._document import (
    InvalidDocumentError,
    canonical_json,
    document_from_model_version,
    parse_document,
    validate_document,
)
from promptalias.client._uri import PromptRef

TYPE_CHECKING = False  # typing is not imported at run time: the client must import fast
if TYPE_CHECKING:
    import ssl
    from typing import Any, Final

DATA_LINK: Final = "..data"


class SourceMiss(Exception):  # noqa: N818 -- a normal outcome of a lookup, not an error
    """This source does not have the prompt (or could not be asked); `reason` says which."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def pinned_document(doc: dict[str, Any], version: int) -> dict[str, Any] | None:
    """The document of `version` if a projection carries it (as its baseline or as the candidate)."""
    if doc.get("version") == version:
        return {**doc, "experiment": None}
    experiment = doc.get("experiment")
    if experiment and experiment["candidate"].get("version") == version:
        cand = experiment["candidate"]
        return {
            **doc,
            "alias": cand["alias"],
            "version": version,
            "template": cand["template"],
            "digest": cand["digest"],
            "response_format": cand.get("response_format"),
            "model_config": cand.get("model_config"),
            "experiment": None,
        }
    return None


class FileSource:
    """A directory of `<name>.<alias>.json` files: kubelet's projected volume or the sidecar's output.

    Both use the `..data` symlink layout (`key -> ..data/key`, `..data -> ..<timestamp>`); plain files
    work too. Reading through `key` always yields one complete version of a file.
    """

    name = "files"

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def __repr__(self) -> str:
        return f"files {self.directory}"

    def data_target(self) -> str | None:
        """Where `..data` points now; it changes on every atomic update (None without that layout)."""
        try:
            return os.readlink(os.path.join(self.directory, DATA_LINK))
        except OSError:
            return None

    def stat(self, key: str) -> tuple[int, int, int] | None:
        """A cheap change signature of one file (follows the symlinks), None when it is absent."""
        try:
            st = os.stat(os.path.join(self.directory, key))
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def read(self, key: str) -> dict[str, Any]:
        path = os.path.join(self.directory, key)
        for attempt in range(2):
            try:
                with open(path, "rb") as handle:
                    raw = handle.read()
                break
            except FileNotFoundError:
                # An update may have swapped `..data` and removed the old directory while we resolved
                # the path; the second open sees the new one.
                if attempt or not os.path.isdir(self.directory):
                    raise
        return parse_document(raw)

    def fetch(self, ref: PromptRef) -> dict[str, Any]:
        if not os.path.isdir(self.directory):
            raise SourceMiss(f"{self.directory} does not exist")
        if ref.alias is not None:
            try:
                return self.read(ref.key)
            except FileNotFoundError:
                raise SourceMiss(f"no {ref.key} in {self.directory}") from None
            except OSError as exc:
                raise SourceMiss(f"cannot read {ref.key}: {exc}") from None
            except InvalidDocumentError as exc:
                raise SourceMiss(f"{ref.key} is invalid: {exc}") from None
        assert ref.version is not None
        try:
            names = sorted(os.listdir(self.directory))
        except OSError as exc:
            raise SourceMiss(f"cannot list {self.directory}: {exc}") from None
        prefix = ref.name + "."
        for entry in names:
            stem = entry.removesuffix(".json")
            if (
                entry.startswith("..")
                or stem == entry
                or not entry.startswith(prefix)
                or "." in stem[len(prefix) :]
            ):
                continue
            try:
                doc = self.read(entry)
            except (OSError, InvalidDocumentError):
                continue
            found = pinned_document(doc, ref.version)
            if found is not None and doc["name"] == ref.name:
                return found
        raise SourceMiss(f"no projection in {self.directory} carries version {ref.version}")


def _http_error_reason(status: int, body: bytes) -> str:
    try:
        payload = json.loads(body)
        detail = payload.get("message") or payload.get("error_code") or payload.get("error")
    except (ValueError, AttributeError):
        detail = None
    return f"HTTP {status}" + (f": {detail}" if detail else "")


class SidecarSource:
    """The promptalias sidecar on localhost (`PROMPTALIAS_SIDECAR_URL`), plain HTTP without proxies."""

    name = "sidecar"

    def __init__(self, url: str, timeout: float) -> None:
        from urllib.parse import urlsplit  # keep the import cheap when unused

        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"PROMPTALIAS_SIDECAR_URL must be http://host:port, not {url!r}")
        self.url = url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.base_path = parts.path.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"sidecar {self.url}"

    def request(
        self, path: str, *, headers: dict[str, str] | None = None, timeout: float | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        import http.client  # first network use only

        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        try:
            conn.request("GET", self.base_path + path, headers=headers or {})
            response = conn.getresponse()
            body = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            conn.close()

    def fetch(self, ref: PromptRef) -> dict[str, Any]:
        from urllib.parse import quote

        suffix = ref.alias if ref.alias is not None else str(ref.version)
        path = f"/prompts/{quote(ref.name, safe='')}/{quote(suffix, safe='')}"
        try:
            status, _, body = self.request(path)
        except OSError as exc:
            raise SourceMiss(f"unreachable ({exc})") from None
        if status != 200:
            raise SourceMiss(_http_error_reason(status, body))
        try:
            doc = parse_document(body)
        except InvalidDocumentError as exc:
            raise SourceMiss(f"sent an invalid document: {exc}") from None
        if ref.version is not None:
            pinned = pinned_document(doc, ref.version)
            if pinned is None:
                raise SourceMiss(f"answered version {doc['version']}, not {ref.version}")
            return pinned
        return doc

    def wait_for_change(self, etag: str | None, wait: float) -> str | None:
        """Long-poll the sidecar's index until it differs from `etag`; returns the new ETag.

        Returns `etag` unchanged when the wait ran out. Raises OSError when the sidecar is down.
        """
        headers = {"If-None-Match": etag} if etag else {}
        status, response_headers, _ = self.request(
            f"/prompts?wait={wait:g}", headers=headers, timeout=wait + self.timeout
        )
        if status == 304:
            return etag
        if status != 200:
            raise OSError(f"sidecar index answered HTTP {status}")
        return response_headers.get("etag")


class MlflowSource:
    """MLflow's REST API (registered-models/alias, model-versions/get): no `mlflow` import needed.

    Honours MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME/PASSWORD, MLFLOW_TRACKING_INSECURE_TLS and
    MLFLOW_TRACKING_SERVER_CERT_PATH like the MLflow client does.
    """

    name = "mlflow"

    def __init__(self, tracking_uri: str, timeout: float, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.base = tracking_uri.rstrip("/")
        self.timeout = timeout
        self.headers: dict[str, str] = {"Accept": "application/json"}
        token = env.get("MLFLOW_TRACKING_TOKEN")
        user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif user and password:
            import base64

            basic = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {basic}"
        self._insecure = env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true"
        self._cafile = env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None
        self._ssl: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        return f"mlflow {self.base}"

    def _context(self) -> ssl.SSLContext | None:
        if not self.base.startswith("https:"):
            return None
        if self._ssl is None:
            import ssl

            context = ssl.create_default_context(cafile=self._cafile)
            if self._insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl = context
        return self._ssl

    def get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        import urllib.error
        import urllib.parse
        import urllib.request

        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers=self.headers)  # noqa: S310 -- http(s) checked by caller
        try:
            with _opener(self._context()).open(request, timeout=self.timeout) as response:
                payload: dict[str, Any] = json.loads(response.read())
                return payload
        except urllib.error.HTTPError as exc:
            raise SourceMiss(_http_error_reason(exc.code, exc.read())) from None
        except (OSError, ValueError) as exc:
            raise SourceMiss(f"unreachable ({exc})") from None

    def fetch(self, ref: PromptRef) -> dict[str, Any]:
        if ref.alias is not None:
            payload = self.get(
                "/api/2.0/mlflow/registered-models/alias", {"name": ref.name, "alias": ref.alias}
            )
        else:
            payload = self.get(
                "/api/2.0/mlflow/model-versions/get", {"name": ref.name, "version": str(ref.version)}
            )
        model_version = payload.get("model_version")
        if not isinstance(model_version, dict):
            raise SourceMiss("answered without a model_version")
        try:
            return document_from_model_version(model_version, alias=ref.alias)
        except (InvalidDocumentError, ValueError, TypeError) as exc:
            raise SourceMiss(str(exc)) from None


def _opener(context: ssl.SSLContext | None) -> Any:
    """urllib's opener, except that a redirect to another origin (scheme, host or port) or from
    https to http drops the Authorization header: urllib would send the token along."""
    import urllib.request

    class CredentialSafeRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(
            self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
        ) -> urllib.request.Request | None:
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            if new is not None and not _keeps_credentials(req.full_url, new.full_url):
                new.remove_header("Authorization")
            return new

    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), CredentialSafeRedirect())


def _keeps_credentials(old: str, new: str) -> bool:
    """A redirect may carry credentials only to the same origin, or from http to https on it."""
    import urllib.parse

    a, b = urllib.parse.urlsplit(old), urllib.parse.urlsplit(new)
    default = {"http": 80, "https": 443}

    def port(parts: urllib.parse.SplitResult) -> int | None:
        return parts.port or default.get(parts.scheme)

    if (a.hostname, port(a)) != (b.hostname, port(b)):
        return a.scheme == "http" and b.scheme == "https" and a.hostname == b.hostname and port(b) == 443
    return not (a.scheme == "https" and b.scheme != "https")


class DiskCache:
    """Last-known-good copies, one file per alias (`<name>.<alias>.json`) or version (`<name>@3.json`)."""

    name = "cache"

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def __repr__(self) -> str:
        return f"cache {self.directory}"

    @staticmethod
    def file_name(ref: PromptRef) -> str:
        # Aliases never contain '.', names never contain '@': the two forms cannot collide.
        return ref.key if ref.alias is not None else f"{ref.name}@{ref.version}.json"

    def fetch(self, ref: PromptRef) -> dict[str, Any]:
        path = os.path.join(self.directory, self.file_name(ref))
        try:
            with open(path, "rb") as handle:
                doc = json.loads(handle.read())
            return validate_document(doc, pinned=ref.alias is None)
        except FileNotFoundError:
            raise SourceMiss("no last-known-good copy") from None
        except (OSError, ValueError) as exc:
            raise SourceMiss(f"unreadable copy {path}: {exc}") from None

    def save(self, ref: PromptRef, doc: dict[str, Any]) -> None:
        """Write atomically (temp file + rename); raises OSError when the directory is not writable."""
        import contextlib
        import tempfile  # only when a copy is written

        os.makedirs(self.directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(canonical_json(doc))
            os.replace(tmp, os.path.join(self.directory, self.file_name(ref)))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

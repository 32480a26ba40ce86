"""Where the served model comes from: ``AIP_STORAGE_URI``, a ``gs://`` prefix or a local path.

Vertex AI copies the version's artifact directory to a bucket of its own and names it in
``AIP_STORAGE_URI``; the container downloads it once, before it reports healthy. Every
storage call has a timeout and the client's default retry of transient errors, and its
failures become the project's errors here, so the server logs one line, not a traceback.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from app.core.errors import BackendUnavailableError, ConfigError, FraudMlopsError, NotFoundError

GCS_SCHEME = "gs://"
# Per storage call (a listing page, one object's download); the artifact is two small files.
DOWNLOAD_TIMEOUT_SECONDS = 60.0


def fetch_artifact(
    uri: str, workdir: Path, *, client: Any = None, timeout: float = DOWNLOAD_TIMEOUT_SECONDS
) -> Path:
    """The local directory holding the artifact at ``uri``.

    A local path (or ``file://``) is used where it is; a ``gs://bucket/prefix`` is
    downloaded, every object under ``prefix/`` at its relative path, into ``workdir``.
    ``client`` is a ``google.cloud.storage.Client`` (default: one from the environment's
    credentials, as Vertex AI gives the container).
    """
    if not uri:
        raise ConfigError("AIP_STORAGE_URI is not set: no model to serve")
    if not uri.startswith(GCS_SCHEME):
        path = Path(uri.removeprefix("file://"))
        if not path.is_dir():
            raise NotFoundError(f"model artifact directory {path} does not exist")
        return path
    bucket, _, prefix = uri.removeprefix(GCS_SCHEME).partition("/")
    if not bucket:
        raise ConfigError(f"AIP_STORAGE_URI {uri!r} names no bucket")
    prefix = prefix.strip("/")
    return _download(bucket, f"{prefix}/" if prefix else "", workdir, client, timeout)


def _download(bucket: str, prefix: str, workdir: Path, client: Any, timeout: float) -> Path:
    # Imported here: a local artifact needs no GCP client library at all.
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc
    from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

    where = f"gs://{bucket}/{prefix}"
    target = workdir / "model"
    try:
        if client is None:
            from google.cloud import storage

            client = storage.Client()
        count = 0
        for blob in client.list_blobs(bucket, prefix=prefix, timeout=timeout):
            rel = PurePosixPath(blob.name[len(prefix) :])
            if blob.name.endswith("/") or not rel.parts:
                continue  # a "folder" placeholder object
            if ".." in rel.parts or rel.is_absolute():
                raise ConfigError(f"refusing object {blob.name!r}: it escapes {where}")
            path = target.joinpath(*rel.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(path), timeout=timeout)
            count += 1
    except FraudMlopsError:
        raise
    except gexc.NotFound as exc:
        raise NotFoundError(f"bucket of {where} does not exist: {exc.message}") from exc
    except (gexc.Forbidden, gexc.Unauthorized, auth_exc.DefaultCredentialsError) as exc:
        # The container's service account cannot read the artifact: an operator's fix.
        raise ConfigError(f"cannot read {where}: {exc}") from exc
    except (
        gexc.GoogleAPICallError,
        gexc.RetryError,
        auth_exc.TransportError,
        InvalidResponse,  # the media layer's raw HTTP failure
        DataCorruption,  # a checksum mismatch: the next attempt may be whole
        OSError,  # requests' and the socket's errors, and a full disk
    ) as exc:
        raise BackendUnavailableError(f"downloading {where} failed: {exc}") from exc
    if count == 0:
        raise NotFoundError(f"no objects under {where}")
    return target

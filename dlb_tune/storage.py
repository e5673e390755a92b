"""Where experiments are stored: ``--storage`` folders and URIs, their pyarrow filesystems, checking
them, a local copy of a stored one, and reading and writing an experiment's files safely.

A URI is ``s3://BUCKET/PREFIX`` (or any scheme pyarrow opens, such as ``gs://``). An
S3-compatible store other than AWS (MinIO, Ceph, a local test server) is named in the query,
the way pyarrow spells it::

    s3://bucket/prefix?endpoint_override=http://127.0.0.1:9000&scheme=http

The query belongs to the storage, not to a path inside it: ``join`` keeps it at the end when
adding the experiment's name, and Ray gets the filesystem itself (``ray_storage``) with the
plain path, so every Ray worker reaches the same endpoint. Credentials come from the
environment (``AWS_ACCESS_KEY_ID``...), as the AWS SDK reads them; they are never written out.

The S3 filesystem has short timeouts and few retries, so that a wrong endpoint fails in
seconds (``check_storage``, before Ray starts) rather than after minutes of retries.

An experiment's files go through the same filesystems, local or stored: each is written whole or
not at all (a temporary name, then a rename: a crash leaves the previous one), and a file that
does not parse is one error naming it (``DamagedFile``): experiment folders are shared, and a
reader must neither trust nor choke on what it finds there.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import secrets
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl, urlsplit

from dlb_tune.show import one_line

S3_OPTIONS = ("endpoint_override", "scheme", "region")  # the query keys an s3:// URI may carry
CONNECT_TIMEOUT_S = 5.0  # a reachable endpoint answers a TCP connect well within this
REQUEST_TIMEOUT_S = 30.0  # a checkpoint upload is one request; this bounds a stalled one
S3_ATTEMPTS = 3  # the AWS SDK's default is 10 with back-off: minutes against a dead endpoint
CHECK_ATTEMPTS = 1  # the check before a sweep: a refused or timed-out connection is the answer
NOT_CACHED = ("checkpoint_",)  # folders the reading commands never open: they stay in the store


RESULTS_ENV = "DLB_TUNE_RESULTS"
DEFAULT_STORAGE = "dlb-tune-runs"  # relative to the working folder


class StorageError(RuntimeError):
    """A storage URI that is malformed, unreachable or names no bucket. One line, for the user."""


def is_uri(path: str | Path) -> bool:
    return "://" in str(path)


def split_query(uri: str) -> tuple[str, str]:
    """``s3://b/p?x=1`` -> ``("s3://b/p", "x=1")``."""
    base, _, query = uri.partition("?")
    return base, query


def join(uri: str, *parts: str) -> str:
    """``parts`` appended to the URI's path, its query (the endpoint) kept at the end."""
    base, query = split_query(uri)
    path = "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return f"{path}?{query}" if query else path


def shown(uri: str) -> str:
    """The URI for messages: without any user:secret@ part (a secret may hold '/'), of the store
    or of an endpoint in the query."""
    return re.sub(r"//[^@?&]*@", "//", uri)


def resolve_storage(storage: str | None) -> str:
    """``--storage``, else $DLB_TUNE_RESULTS, else ./dlb-tune-runs; a local one made absolute."""
    storage = storage or os.environ.get(RESULTS_ENV) or DEFAULT_STORAGE
    if is_uri(storage):
        refuse_credentials(storage)  # before the URI is printed or written anywhere
        return storage
    return str(Path(storage).expanduser().resolve())


def refuse_credentials(uri: str) -> None:
    """A URI is printed, logged and written into sweep.json: credentials must never be in it."""
    if "@" in uri:
        raise StorageError(f"{shown(uri)}: the storage URI holds user info (KEY:SECRET@); put credentials in the "
                           f"environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or ~/.aws, never in the URI")


def filesystem(uri: str | Path, attempts: int = S3_ATTEMPTS):
    """pyarrow's filesystem for a local path or a storage URI, and the path inside it (an absolute
    local path, or ``bucket/prefix/...``)."""
    import pyarrow.fs

    if not is_uri(uri):
        return pyarrow.fs.LocalFileSystem(), str(Path(uri).expanduser().absolute())
    uri = str(uri)
    refuse_credentials(uri)
    scheme, netloc, path, query, _ = urlsplit(uri)
    if scheme != "s3":
        try:
            return pyarrow.fs.FileSystem.from_uri(uri)
        except (OSError, ValueError) as e:
            raise StorageError(f"{shown(uri)}: {_first_line(e)}") from None
    options = dict(parse_qsl(query))
    unknown = sorted(set(options) - set(S3_OPTIONS))
    if unknown:
        raise StorageError(f"{shown(uri)}: unknown option(s) {', '.join(unknown)} (known: {', '.join(S3_OPTIONS)})")
    endpoint = options.get("endpoint_override")
    if endpoint and "://" in endpoint:  # pyarrow takes host:port plus a scheme; users paste a URL
        options["scheme"], options["endpoint_override"] = endpoint.split("://", 1)
    fs = pyarrow.fs.S3FileSystem(
        **options, connect_timeout=CONNECT_TIMEOUT_S, request_timeout=REQUEST_TIMEOUT_S,
        retry_strategy=pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=attempts),
    )
    return fs, f"{netloc}{path}".rstrip("/")


def located(uri: str, fs_path: str) -> str:
    """A path inside the filesystem of ``uri`` (as Ray reports it) as a URI of the same store."""
    query = split_query(uri)[1]
    return f"{urlsplit(uri).scheme}://{fs_path}" + (f"?{query}" if query else "")


def ray_storage(storage: str) -> tuple[str, object | None]:
    """``RunConfig``'s storage_path and storage_filesystem: a local folder as it is, a URI as its
    filesystem (with the endpoint and timeouts above) plus the path inside it."""
    if not is_uri(storage):
        return storage, None
    fs, path = filesystem(storage)
    return path, fs


def check_storage(storage: str) -> None:
    """Fail now, in one line, when a storage URI's bucket is missing or its endpoint unreachable."""
    if not is_uri(storage):
        return
    import pyarrow.fs

    fs, path = filesystem(storage, attempts=CHECK_ATTEMPTS)
    bucket = path.split("/", 1)[0]
    try:
        info = fs.get_file_info(bucket)
    except OSError as e:
        raise StorageError(f"storage {shown(storage)} is unreachable: {_first_line(e)}") from None
    if info.type == pyarrow.fs.FileType.NotFound:
        raise StorageError(f"storage {shown(storage)}: bucket '{bucket}' does not exist "
                           f"(or these credentials cannot see it)")


def cache_folder_root() -> Path:
    """Where the reading commands keep local copies of stored folders."""
    from dlb_tune.places import storage_copies_dir

    return storage_copies_dir()


def cache_folder(uri: str) -> Path:
    """The local copy of one stored folder: its scheme, bucket and path under the cache root."""
    _, path = filesystem(uri)
    folder = _inside(cache_folder_root(), f"{urlsplit(uri).scheme}/{path}")
    if folder is None:
        raise StorageError(f"{shown(uri)}: a path with '..' or empty parts has no place in the local cache")
    return folder


def fetch(uri: str, echo: Callable[[str], None] | None = None) -> Path:
    """Copy a stored folder into ``cache_folder`` (checkpoints left out), and return it.

    A file already there, of the same size and newer than the stored one, is not fetched again,
    so a second ``report`` on a finished sweep costs one listing.
    """
    import pyarrow.fs

    check_storage(uri)
    fs, root = filesystem(uri)
    local = cache_folder(uri)
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True, allow_not_found=True))
    except OSError as e:
        raise StorageError(f"{shown(uri)}: cannot list: {_first_line(e)}") from None
    copied, unsafe = 0, []
    for info in infos:
        rel = info.path[len(root):].lstrip("/")
        if info.type != pyarrow.fs.FileType.File or any(part.startswith(NOT_CACHED) for part in rel.split("/")):
            continue
        target = _inside(local, rel)
        if target is None:
            unsafe.append(rel)
            continue
        if _is_current(target, info):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(info.path) as src:
            target.write_bytes(src.read())
        copied += 1
    if unsafe:  # written by someone else: never a file of ours
        print(f"warning: {shown(uri)}: skipped {len(unsafe)} object(s) whose key would leave the local copy "
              f"({unsafe[0]!r})", file=sys.stderr)
    if echo is not None:
        echo(f"{shown(uri)}: {copied} file(s) fetched into {local} (checkpoints stay in the store)")
    return local


def _inside(local: Path, rel: str) -> Path | None:
    """Where object ``rel`` goes under ``local``; None for a key with '..', '.' or empty parts, or one
    that would land outside ``local`` all the same."""
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return None
    target = local / rel
    return target if target.resolve().is_relative_to(local.resolve()) else None


def _is_current(target: Path, info) -> bool:
    if not target.is_file():
        return False
    stat = target.stat()
    return stat.st_size == info.size and (info.mtime is None or stat.st_mtime >= info.mtime.timestamp())


def upload(local: Path, uri: str, files: list[Path] | None = None) -> int:
    """``files`` (default: every file under ``local``) written to the same relative paths under
    ``uri``; their count."""
    fs, root = filesystem(uri)
    files = [p for p in sorted(local.rglob("*")) if p.is_file()] if files is None else files
    for p in files:
        dest = f"{root}/{p.relative_to(local).as_posix()}"
        try:
            fs.create_dir(dest.rsplit("/", 1)[0], recursive=True)
            with fs.open_output_stream(dest) as out:
                out.write(p.read_bytes())
        except OSError as e:
            raise StorageError(f"{shown(uri)}: cannot write {p.relative_to(local)}: {_first_line(e)}") from None
    return len(files)


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


# --- an experiment's files, whole or not at all ------------------------------------------------


class ReportError(RuntimeError):
    """An experiment folder that cannot be read, or lacks what was asked of it. One line, for the user."""


class DamagedFile(ReportError):
    """A file of an experiment folder that does not parse (cut short by a crash, or not ours)."""

    def __init__(self, path: str | Path, kind: str, error: Exception):
        self.file = Path(split_query(str(path))[0]).name
        super().__init__(f"{shown(str(path))}: not valid {kind}, damaged or cut short ({one_line(error)})")



@contextmanager
def local_folder(folder: str | Path) -> Iterator[Path]:
    """A local folder to write into: ``folder`` itself, or for a URI a temporary one whose files
    are uploaded there at the end (figures are drawn by libraries that write local files)."""
    if not is_uri(folder):
        yield Path(folder)
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)
        upload(Path(tmp), str(folder))


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_bytes(path: str | Path, data: bytes) -> None:
    """The whole file or, after a crash, the previous one: readers never see half of it."""
    with atomic(path) as (fs, p):
        with fs.open_output_stream(p) as f:
            f.write(data)


@contextmanager
def atomic(path: str | Path) -> Iterator[tuple[Any, str]]:
    """pyarrow's filesystem and a path to write ``path``'s new content to, in place at the end.

    Locally a temporary name beside it, renamed over it; an object store publishes an object only
    once its upload completes, so there the path itself."""
    fs, p = filesystem(path)
    folder = p.rpartition("/")[0]
    fs.create_dir(folder, recursive=True)
    if is_uri(path):
        yield fs, p
        return
    # a name no reader looks for (TensorBoard reads any file named *tfevents*), made with the
    # umask's mode as the file itself would be (mkstemp's would be 0600)
    tmp = f"{folder}/.dlb-tune-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        yield fs, tmp
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_text(path: str | Path) -> str:
    return read_bytes(path).decode()


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(to_jsonable(obj), indent=2))


def read_json(path: str | Path) -> dict[str, Any] | None:
    """The file's content, or None when it is not there (yet); ``DamagedFile`` when it does not parse."""
    try:
        text = read_bytes(path)
    except OSError:  # FileNotFoundError, or a remote store that cannot say more
        return None
    try:
        obj = json.loads(text)
    except ValueError as e:  # cut short, or not UTF-8
        raise DamagedFile(path, "JSON", e) from None
    if not isinstance(obj, dict):
        raise DamagedFile(path, "JSON", TypeError(f"an object expected, got {type(obj).__name__}"))
    return obj


def read_bytes(path: str | Path) -> bytes:
    if not is_uri(path):  # a local file needs no pyarrow (a command that only reads JSON stays light)
        return Path(path).expanduser().read_bytes()
    fs, p = filesystem(path)
    with fs.open_input_stream(p) as f:
        return f.read()


def exists(path: str | Path) -> bool:
    if not is_uri(path):
        return Path(path).expanduser().exists()
    import pyarrow.fs

    fs, p = filesystem(path)
    return fs.get_file_info(p).type != pyarrow.fs.FileType.NotFound


def to_jsonable(obj: Any) -> Any:
    """Plain Python for ``json``: numpy scalars unwrapped, dataclasses as dicts, NaN and inf as None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (ValueError, AttributeError):  # an array of several values: left to json to refuse
            return obj
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj

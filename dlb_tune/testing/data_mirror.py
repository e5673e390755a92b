"""A local mirror for `dlb-tune data fetch`: the publishers' formats, built from the real data.

Each data set as its publisher serves it (gzip'd IDX files, GitHub's repository zip, the CSV
files, Stanford's GloVe zip, CelebA's zip and text files), built from the real data folder;
``step`` keeps every step-th example (tests use a slice, ``python -m bench data-fetch`` everything).
The server is python's ``http.server`` with Range support; it records every request and can cut
a file short or corrupt it once, as a flaky network would.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import struct
import threading
import zipfile
from pathlib import Path

from dlb_tune.tasks.cnn import GROCERY_DATA


def idx_head(src: Path, n: int) -> bytes:
    """The first ``n`` items of an IDX file, with its count rewritten."""
    data = src.read_bytes()
    dims = data[3]
    shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
    item = 1
    for d in shape[1:]:
        item *= d
    start = 4 + 4 * dims
    return data[:4] + struct.pack(">I", n) + data[8:start] + data[start:start + n * item]


def build_mnist(data: Path, out: Path, step: int) -> None:
    # a slice keeps 6,000 training images: more than the 5,000 the validation split takes
    train, test = (60000, 10000) if step == 1 else (6000, 600)
    for name, n in (("train-images-idx3-ubyte", train), ("train-labels-idx1-ubyte", train),
                    ("t10k-images-idx3-ubyte", test), ("t10k-labels-idx1-ubyte", test)):
        (out / f"{name}.gz").write_bytes(gzip.compress(idx_head(data / "MNIST/raw" / name, n), compresslevel=1))


GROCERY_ZIP = GROCERY_DATA.files[0].name  # GroceryStoreDataset-<commit>.zip


def build_grocery(data: Path, out: Path, step: int) -> None:
    """GitHub's archive layout: ``<repo>-<ref>/dataset/...``; the iconic images stand in as one file."""
    src = data / "grocery/GroceryStoreDataset/dataset"
    top = GROCERY_ZIP.removesuffix(".zip")
    with zipfile.ZipFile(out / GROCERY_ZIP, "w") as z:
        z.write(src / "classes.csv", f"{top}/dataset/classes.csv")
        z.writestr(f"{top}/README.md", "not needed by the loader")
        z.writestr(f"{top}/dataset/iconic-images-and-descriptions/x.txt", "not needed")
        for split in ("train", "val", "test"):
            lines = (src / f"{split}.txt").read_text().splitlines()[::step]
            z.writestr(f"{top}/dataset/{split}.txt", "\n".join(lines) + "\n")
            for line in lines:
                rel = line.split(",")[0].strip().lstrip("/")
                z.write(src / rel, f"{top}/dataset/{rel}")


def build_celeba(data: Path, out: Path, step: int) -> None:
    src = data / "celeba"
    lines = (src / "list_eval_partition.txt").read_text().splitlines()[::step]
    (out / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    for name in ("identity_CelebA.txt", "list_attr_celeba.txt"):
        (out / name).write_bytes((src / name).read_bytes())
    with zipfile.ZipFile(out / "img_align_celeba.zip", "w") as z:
        for line in lines:
            name = line.split()[0]
            z.write(src / "img_align_celeba" / name, f"img_align_celeba/{name}")


def build_glove(data: Path, out: Path, step: int) -> None:
    """Stanford's zip holds all four sizes; here the real 25-d subset and a stand-in 50-d file."""
    with zipfile.ZipFile(out / "glove.twitter.27B.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(data / "glove/glove.twitter.27B.25d.subset12k.txt", "glove.twitter.27B.25d.txt")
        z.writestr("glove.twitter.27B.50d.txt", "the 0.1\n")


def build_emotions(data: Path, out: Path, step: int) -> None:
    for name in ("trainEmotions.csv", "testEmotions.csv"):
        (out / name).write_bytes((data / "emotions" / name).read_bytes())


BUILDERS = {"mnist": build_mnist, "grocery": build_grocery, "emotions": build_emotions, "glove": build_glove,
            "celeba": build_celeba}


def build(data: Path, root: Path, step: int) -> Path:
    """Every data set under ``root/<name>/``; returns the SHA256SUMS file written beside them."""
    for name, build_one in BUILDERS.items():
        (root / name).mkdir(parents=True)
        build_one(data, root / name, step)
    return write_sums(root)


def start(root: Path) -> "Mirror":
    server = Mirror(root)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def write_sums(root: Path) -> Path:
    sums = root / "SHA256SUMS"
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root)}"
             for p in sorted(root.glob("*/*"))]
    sums.write_text("\n".join(lines) + "\n")
    return sums


class Mirror(http.server.ThreadingHTTPServer):
    """Serves ``root`` with Range support; records each request; can cut or corrupt a file once."""

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), Handler)
        self.root, self.requests, self.cut, self.corrupt = root, [], {}, set()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        srv: Mirror = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        path = srv.root / self.path.lstrip("/")
        if not path.is_file():
            return self.send_error(404)
        body = bytearray(path.read_bytes())
        if self.path in srv.corrupt:
            body[len(body) // 2] ^= 0xFF
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) - start))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        stop = srv.cut.pop(self.path, len(body))  # a cut file: the connection drops midway, once
        self.wfile.write(bytes(body[start:stop]))

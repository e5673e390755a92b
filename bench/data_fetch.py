"""``python -m bench data-fetch``: ``dlb-tune data fetch all`` from a mirror on 127.0.0.1, bytes
moved and wall time.

The mirror (``dlb_tune.testing.data_mirror``) serves every data set in its publisher's format,
built from the whole real data folder (no trimming), with a SHA256SUMS file for ``--checksums``.
The fetch runs as a user would run it, in its own process (start-up included); the result goes to
``bench/results/data_fetch.json``. It reports, it does not judge.

    python -m bench data-fetch [--data-dir DIR]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.cli import DataDir, benchmark
from bench.common import RESULTS, command_line, default_data_dir


@benchmark("data-fetch")
def data_fetch(data_dir: DataDir = None) -> None:
    """`dlb-tune data fetch all` from a local mirror of the data folder -> bench/results/data_fetch.json."""
    from dlb_tune.testing import data_mirror  # the data sets' catalog, which imports torch: when it runs

    with tempfile.TemporaryDirectory() as tmp:
        root, dest = Path(tmp) / "mirror", Path(tmp) / "data"
        t0 = time.monotonic()
        sums = data_mirror.build(Path(data_dir or default_data_dir()), root, step=1)
        build_s = time.monotonic() - t0
        served = sum(p.stat().st_size for p in root.glob("*/*"))
        server = data_mirror.start(root)
        dest.mkdir()
        cmd = [sys.executable, "-m", "dlb_tune.cli", "data", "fetch", "all", "--data-dir", str(dest),
               "--mirror", server.url, "--checksums", str(sums), "--glove-dim", "25"]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        fetch_s = time.monotonic() - t0
        server.shutdown()
        installed = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        out = {"exit_code": proc.returncode, "bytes_served": served, "requests": len(server.requests),
               "fetch_s": round(fetch_s, 2), "installed_bytes": installed, "mirror_build_s": round(build_s, 2),
               "MB_per_s": round(served / 1e6 / fetch_s, 1), "load_average": os.getloadavg(),
               "command": command_line(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if proc.returncode:
        out["stderr"] = proc.stderr[-2000:]
    print(json.dumps(out, indent=2))
    (RESULTS / "data_fetch.json").write_text(json.dumps(out, indent=2) + "\n")

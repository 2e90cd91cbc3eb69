"""[swift] path: the project's tool directories as one small tar, for every node's PATH.

The tutorial's setup.sh puts ``app/`` on PATH so that scripts can call ``simulate`` by name;
swiftrun carries those directories' files (links followed, sub-directories kept) to each node.
Hidden files and anything that holds a secret (judged by content, as for the script directory)
are refused or left out.
"""

from __future__ import annotations

import io
import os
import tarfile

from swiftrun.errors import ConfigError
from swiftrun.sync.sensitive import secret_in

MAX_BYTES = 64 * 2**20


def tools_tar(dirs) -> tuple[bytes, list[str]]:
    """(tar bytes, the names in it) of the files under ``dirs``; the first directory wins a name."""
    chosen: dict[str, str] = {}
    for top in dirs:
        for base, subdirs, files in os.walk(top, followlinks=True):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = os.path.join(base, name)
                rel = os.path.relpath(path, top)
                if rel in chosen or not os.path.isfile(path):
                    continue
                what = secret_in(path)
                if what:
                    raise ConfigError(f"{path} (in [swift] path) holds {what}: swiftrun never "
                                      "uploads secrets to the nodes",
                                      hint="move it out of the tool directory")
                chosen[rel] = path
    buf = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for rel in sorted(chosen):
            st = os.stat(chosen[rel])
            total += st.st_size
            if total > MAX_BYTES:
                raise ConfigError(f"[swift] path holds more than {MAX_BYTES >> 20} MiB of files",
                                  hint="put data in the script directory; keep [swift] path for tools")
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = st.st_size, st.st_mode & 0o755 | 0o400, int(st.st_mtime)
            with open(chosen[rel], "rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue(), sorted(chosen)

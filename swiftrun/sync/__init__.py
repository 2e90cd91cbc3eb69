"""The script directory up to the headnode and a run's outputs back, over ONE open SSH connection.

Everything travels as tar streams over the node's open OpenSSH connection (``channel``), one
remote command per round trip:

- ``ignore``: which paths never go up (gitignore rules, .swiftignore, [sync] exclude, swift's runs);
- ``manifest``: a tree's entries, the local ``scan`` and the manifest of what the headnode holds;
- ``uploading``: ``upload``, incremental against the manifest, one round trip when nothing moved;
- ``bulk``: a full upload as one pipeline (the scan feeding GNU tar while it walks);
- ``fetching``: ``fetch``, staged then installed file by file, with the conflict rules;
- ``ahead``: a warm run's fetch listing, made while swift runs, then caught up;
- ``heap``: Python's cycle collector held off while a scan, a manifest or a listing is built.

Callers import from here; the modules of this package import each other.
"""

from swiftrun.sync.ahead import AHEAD_MIN_ENTRIES, ListAhead
from swiftrun.sync.channel import root_expr
from swiftrun.sync.fetching import FetchReport, fetch, remote_listing, select_fetch
from swiftrun.sync.manifest import Entry, Manifest, scan
from swiftrun.sync.uploading import (Prepared, UploadPlan, UploadReport, plan_upload, prepare,
                                     upload)

__all__ = ["AHEAD_MIN_ENTRIES", "Entry", "FetchReport", "ListAhead", "Manifest", "Prepared",
           "UploadPlan", "UploadReport", "fetch", "plan_upload", "prepare", "remote_listing",
           "root_expr", "scan", "select_fetch", "upload"]

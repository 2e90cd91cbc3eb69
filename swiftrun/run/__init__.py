"""A run of a SwiftScript: the job the whole tool exists for.

- ``runner``: the main job: up or reuse, sync, swift, stream, fetch, dissolve (or keep, and why);
- ``control``: the remote run protocol (start swift detached, follow, latest, cancel), also used
  by ``logs`` and ``cancel``;
- ``plan``: what a run would do, offline (``--dry-run``, ``swiftrun plan``);
- ``watch``: ``--watch``: run again on every change the next upload would send.
"""

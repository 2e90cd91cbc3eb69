"""Checks: each says ok / warn / fail, what it saw, and the one thing to do about it.

- ``base``: the :class:`~swiftrun.checks.base.Check` type, running checks under a time limit,
  and turning the first failure into an error (``raise_on_failure``, what ``up`` does);
- ``local``: the project's own files: credentials, key file, swift.conf, staging;
- ``cloud``: EC2 before anything is launched; ``prelaunch()`` is what ``up`` runs first;
- ``node``: the headnode and workers over SSH, given the nodes and how to reach them.

``--fix`` helpers live next to what they fix. These modules know projects, providers and nodes,
never a Cluster: ``up`` (cluster/) and ``doctor`` (commands/doctor.py) call them.
"""

"""The node contract: what a headnode or worker holds and answers, and how it gets there.

- ``layout``: the roles, paths, ports and per-project run files the tool, the boot scripts and
  the test cloud agree on (docs/internals.md, "The node");
- ``userdata``: the boot script of a headnode or worker, rendered from ``userdata/*.sh``;
- ``swift``: how Swift gets onto the nodes (in the image, or installed at boot) and the rule that
  can be checked before anything is launched.

Nothing here talks to a cloud or opens a connection: the layers above use these facts to launch
(cloud), reach (remote) and probe (cluster, checks) the nodes.
"""

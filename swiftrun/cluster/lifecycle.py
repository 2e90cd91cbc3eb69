"""Cloud-agnostic cluster lifecycle: find by tags, up/reuse, scale, readiness, ordered teardown.

The cloud's tags are the truth. Every launch carries its tags in the same API call, so a process
killed at any moment leaves nothing ``down`` cannot find; the local files under
``<state>/clusters/<name>/`` (pinned host keys, locks, the last tag read) are a cache and a
courtesy. A provider (cloud/base.py) does the cloud's part; this module only decides what to ask
for, in which order, and what to do when something fails halfway. Before anything is paid for,
``up`` runs the pre-launch checks (checks/cloud.py).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from dataclasses import dataclass, field, replace

from swiftrun import environ
from swiftrun.cloud.base import HEADNODE, WORKER, LaunchSpec, Node, Provider
from swiftrun.cluster.locks import ClusterLocks
from swiftrun.cluster.services import start_services, stop_services
from swiftrun.cluster.warm import LastSeen
from swiftrun.errors import CloudError, ConfigError, SwiftrunError
from swiftrun.node.layout import BOOT_LOG, STATE_DIR
from swiftrun.paths import cluster_dir
from swiftrun.remote import Remote, Target

BOOT_TIMEOUT = environ.seconds("SWIFTRUN_BOOT_TIMEOUT")
SSH_TIMEOUT = environ.seconds("SWIFTRUN_SSH_TIMEOUT")
# A static host exists already: a refusal is retried only briefly (sshd restarting), not for a boot.
STATIC_SSH_TIMEOUT = environ.seconds("SWIFTRUN_STATIC_SSH_TIMEOUT")
# Spot launch errors after which on-demand workers are launched instead (every zone said no).
SPOT_FALLBACK_CODES = ("InsufficientInstanceCapacity", "SpotMaxPriceTooLow",
                       "MaxSpotInstanceCountExceeded")
TAG_MARKET = "swiftrun:market"


class ClusterMismatch(SwiftrunError):
    """A running cluster was launched with settings that differ from the project's."""

    exit_code = 1


@dataclass
class UpResult:
    nodes: list[Node]
    created: list[str] = field(default_factory=list)
    reused: bool = False
    api_calls: int = 0
    seconds: float = 0.0


class Cluster:
    def __init__(self, project, provider: Provider, ui, *, name: str | None = None):
        self.project = project
        self.provider = provider
        self.ui = ui
        self.name = name or project.cluster.name
        self.dir = cluster_dir(self.name)
        key = provider.key_file() if hasattr(provider, "key_file") else project.ssh.key_file
        self.remote = Remote(cluster_dir=self.dir, key_file=key, user=project.ssh.user,
                             proxy_command=project.ssh.proxy_command,
                             connect_timeout=project.ssh.connect_timeout)
        self.seen = LastSeen(self.dir, project, elastic=provider.elastic)
        self.locks = ClusterLocks(self.dir, self.name, ui)

    # -- looking -----------------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        nodes = self.provider.find_nodes(self.name)
        self.seen.remember(nodes)
        self._door = self.headnode_of(nodes)
        return nodes

    def manifest_file(self, remote_root: str):
        """The sync manifest of one project directory on this cluster (upload, fetch, watch)."""
        from pathlib import PurePosixPath

        return self.dir / "sync" / f"{PurePosixPath(remote_root).name}.json"

    # -- the warm path: the last tag read (cluster/warm.py) -------------------------------------
    def may_skip_cloud(self) -> bool:
        """Whether a run may find its cluster without the cloud API (see ``_warm``); cheap."""
        return self.provider.elastic and not self.project.ec2.spot and self.seen.read() is not None

    def _warm(self) -> UpResult | None:
        """A run's reuse without the cloud API, or None to take the normal path.

        Taken only when the last tag read (this machine, at most WARM_TTL ago) shows a running
        headnode and exactly the project's workers with the project's shape, and the headnode
        answers at its address with the host key pinned for that instance id and says it is
        ready. A replaced, stopped or terminated headnode fails one of those and the run asks
        the tags as always; so do `up`, `list`, `down` and every command that changes a cluster.
        """
        if self.project.ec2.spot:
            return None     # spot workers can be reclaimed at any moment: ask the tags
        nodes = self.seen.read()
        if not nodes:
            return None
        head = self.headnode_of(nodes)
        workers = self.workers_of(nodes)
        if not head or head.state != "running" or len(workers) != self.project.cluster.workers:
            return None
        if any(n.shape != self.project.shape_hash(n.role) for n in [head] + workers):
            return None
        target = self.target(head)
        if head.ssh_port != self.project.ssh.port or not self.remote.is_pinned(target):
            return None
        try:
            # one round trip: the command opens the connection too (a separate connect first
            # was one more, ~15 ms of a warm run); only the pinned key is accepted
            state = self.remote.run(target, f"cat {STATE_DIR}/ready >/dev/null 2>&1 && "
                                            f"[ ! -f {STATE_DIR}/failed ] && echo READY",
                                    timeout=30, allow_new=False).stdout.strip()
        except SwiftrunError:
            state = ""
        if state != "READY":
            self.remote.drop(target)
            return None
        self.ui.node("reuse", f"headnode {head.id} and {len(workers)} workers, as seen "
                              "moments ago (its pinned host key answered)")
        self._door = head       # the workers are reached through it, as after any `up`
        return UpResult(nodes=[head] + workers, reused=True)

    @staticmethod
    def headnode_of(nodes: list[Node]) -> Node | None:
        heads = [n for n in nodes if n.role == HEADNODE and n.state != "terminated"]
        return heads[0] if heads else None

    @staticmethod
    def workers_of(nodes: list[Node]) -> list[Node]:
        return [n for n in nodes if n.role == WORKER and n.live]

    def target(self, node: Node, nodes: list[Node] | None = None) -> Target:
        """How to reach ``node``. A worker of an EC2 cluster is reached through its headnode
        (ProxyJump over the headnode's open connection, to its private address): the headnode is
        the cluster's one door, and the worker's key is still checked under its own alias."""
        user = self.project.ssh.user
        if not self.provider.elastic:
            user = self.provider.user_of(node)
            return Target(host=node.ssh_host or node.id, port=node.ssh_port, user=user,
                          alias=node.host_key_alias, label=f"{node.role} {node.id}")
        head = self.headnode_of(nodes) if nodes else getattr(self, "_door", None)
        if node.role == WORKER and head is not None and head.ssh_host and node.private_ip:
            return Target(host=node.private_ip, port=node.ssh_port, user=user,
                          alias=node.host_key_alias, label=f"{node.role} {node.id}",
                          via=self.target(head))
        return Target(host=node.ssh_host or node.id, port=node.ssh_port, user=user,
                      alias=node.host_key_alias, label=f"{node.role} {node.id}")

    # -- who may change it, who still uses it (cluster/locks.py) ---------------------------------
    def lock(self):
        """One swiftrun at a time may change this cluster (a second `up` would launch twice)."""
        return self.locks.change()

    def in_use(self):
        """Held (shared) by every run on this cluster from start to end (see `may_dissolve`)."""
        return self.locks.in_use()

    def may_dissolve(self) -> bool:
        """True when no other run on this machine uses the cluster."""
        return self.locks.may_dissolve()

    # -- up ----------------------------------------------------------------------------------
    def up(self, *, keep_on_failure: bool = False, wait: bool = True,
           check_workers: bool = True) -> UpResult:
        """Bring the cluster to the project's shape, or find it already there.

        ``check_workers=False`` is the run's warm path: on a cluster that is already up only the
        headnode (whose SSH connection the run reuses for sync, run and fetch) is probed, not
        every worker over its own connection. `up` and `doctor` still check them all.
        """
        start = time.monotonic()
        with self.lock():
            warm = None if check_workers or not self.provider.elastic else self._warm()
            if warm is not None:
                result = warm
            elif not self.provider.elastic:
                result = self._up_static()
            else:
                result = self._up_elastic(keep_on_failure=keep_on_failure, wait=wait,
                                          check_workers=check_workers)
        result.api_calls = getattr(self.provider, "api_calls", 0)
        result.seconds = time.monotonic() - start
        return result

    def _check_shape(self, nodes: list[Node]) -> None:
        for node in nodes:
            if not node.live or not node.shape:
                continue
            want = self.project.shape_hash(node.role)
            if node.shape != want:
                what = "settings that shape instances (image, type, spot, Swift, s3fs, init script)"
                want_type = (self.project.ec2.headnode_type if node.role == HEADNODE
                             else self.project.ec2.worker_type)
                if node.type and node.type != want_type:
                    what = f"{node.role} type {node.type} -> {want_type}"
                raise ClusterMismatch(
                    f"cluster {self.name!r} is running with other settings ({what}); run "
                    f"`swiftrun down` first to relaunch it, or use another [cluster] name")

    def _up_elastic(self, *, keep_on_failure: bool, wait: bool,
                    check_workers: bool = True) -> UpResult:
        from swiftrun.node.userdata import render_userdata

        p = self.project
        nodes = self.nodes()   # first: bad credentials fail here, before any progress line
        self.ui.step(f"Cluster {self.name} in {p.ec2.region}")
        self._check_shape(nodes)
        head = self.headnode_of(nodes)
        workers = self.workers_of(nodes)
        created: list[str] = []
        orphans = [w.id for w in workers] if workers and (
            not head or head.state in ("shutting-down", "terminated")) else []
        if orphans:
            # Workers learn their headnode's private IP at launch; a new headnode has another
            # one, so these would wait for a coaster service that will never answer.
            self.ui.warn(f"the headnode of cluster {self.name!r} is gone: terminating its "
                         f"{len(orphans)} worker(s) too, new ones will join the new headnode")
            self.seen.forget()
            self.provider.terminate(self.name, orphans)
            self.remote.forget(orphans)
            workers = []
        need_workers = max(0, p.cluster.workers - len(workers))
        if len(workers) > p.cluster.workers:
            self.ui.warn(f"{len(workers)} workers are running, the project asks for "
                         f"{p.cluster.workers}: `swiftrun remove {len(workers) - p.cluster.workers}` "
                         "to drop the extra ones")
        if head and head.live and not need_workers:
            self.ui.node("reuse", f"headnode {head.id} and {len(workers)} workers are up")
            if wait:
                checked = self.wait_ready([head] + (workers if check_workers else []), fresh=False)
                if check_workers:
                    workers = checked[1:]
            return UpResult(nodes=[head] + workers, reused=True)
        self.seen.forget()     # from here on the cluster changes
        try:
            from swiftrun.checks.base import raise_on_failure
            from swiftrun.checks.cloud import (  # fail before paying
                existing_group_checks, up_checks, worker_dry_run)

            raise_on_failure(up_checks(p, self.provider, fresh=not nodes), self.ui)
            self.provider.prepare(self.name, fresh=not nodes)
            raise_on_failure(existing_group_checks(p, self.provider), self.ui)
            if need_workers:
                raise_on_failure(worker_dry_run(p, self.provider, self.name), self.ui)
            if head and head.state in ("stopped", "stopping"):
                self.ui.node("headnode", f"starting stopped {head.id}")
                self.provider.start(self.name, [head.id])
                head = self.provider.wait_running(self.name, [head.id])[0]
            if not head or not head.live:
                self.ui.step("Launching headnode")
                spec = LaunchSpec(role=HEADNODE, count=1, instance_type=p.ec2.headnode_type,
                                  image=self.provider.resolve_image(HEADNODE),
                                  userdata=render_userdata(p, HEADNODE, cluster=self.name,
                                                           headnode_ip=None),
                                  shape=p.shape_hash(HEADNODE))
                launched = self.provider.launch(self.name, spec)
                created += [n.id for n in launched]
                head = launched[0]
                self.ui.track(head.id, HEADNODE, head.state)
            new_workers: list[Node] = []
            with self.ui.nodes_view("Bringing up", count=1 + len(workers) + need_workers):
                if need_workers:
                    new_workers = self._launch_workers(head, need_workers)
                    created += [n.id for n in new_workers]
                if head.id in created or head.state != "running":
                    # Only the headnode is waited for (its public address is the way in); the
                    # workers' boot is learnt from it. The same calls describe the new workers.
                    running = {n.id: n for n in self.provider.wait_running(
                        self.name, [head.id], also=[n.id for n in new_workers])}
                    for n in running.values():
                        self.ui.track(n.id, n.role, n.state)
                    head = running.get(head.id, head)
                    new_workers = [running.get(n.id, n) for n in new_workers]
                all_nodes = [head] + workers + new_workers
                if wait:
                    all_nodes = self.wait_ready(all_nodes, fresh=True, created=created)
                    self.seen.remember(all_nodes)   # as DescribeInstances just said, and all ready
            return UpResult(nodes=all_nodes, created=created)
        except BaseException as exc:
            self.seen.forget()
            created += self._launched_unrecorded(nodes, created)
            if created and not keep_on_failure:
                why = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                self.ui.warn(f"up {why}: terminating the {len(created)} instance(s) it created "
                             "(use --keep-on-failure to keep them for debugging)")
                try:
                    self.provider.terminate(self.name, created)
                except SwiftrunError as texc:
                    self.ui.warn(f"could not terminate {', '.join(created)}: {texc}; "
                                 "run `swiftrun down`")
                    keep_on_failure = True      # the group is still in use: down deletes it
            elif created:
                self.ui.warn(f"kept {len(created)} instance(s) for debugging; `swiftrun down` "
                             "removes them")
            if not keep_on_failure:
                self._undo_prepare(created)
            raise

    def _undo_prepare(self, terminated: list[str]) -> None:
        """A failed `up` also deletes the security group and key pair it made itself (once its
        instances are gone); what it found already stays. Best effort: `down` finds the rest."""
        if not getattr(self.provider, "made", None):
            return
        try:
            if terminated:
                self.provider.wait_gone(self.name, terminated)
            gone = self.provider.undo_prepare(self.name)
        except (SwiftrunError, KeyboardInterrupt) as exc:
            self.ui.warn(f"could not delete what this up created ({exc}); `swiftrun down "
                         "--delete-key` removes it")
            return
        if gone:
            self.ui.warn(f"deleted what this up created: {', '.join(gone)}")

    def _launched_unrecorded(self, before: list[Node], created: list[str]) -> list[str]:
        """Instances of this cluster that appeared during this `up` but are not in ``created``
        (interrupted between RunInstances going through and its reply being read). The lock is
        held, so no other swiftrun launched them. Best effort: `swiftrun down` finds them anyway."""
        try:
            now = self.provider.find_nodes(self.name)   # not remembered: these are going away
        except BaseException:  # noqa: BLE001 - unwinding already; the tags still find them
            return []
        known = {n.id for n in before} | set(created)
        return [n.id for n in now if n.id not in known]

    def _launch_workers(self, head: Node, count: int) -> list[Node]:
        from swiftrun.node.userdata import render_userdata

        p = self.project
        if not head.private_ip:
            raise CloudError(f"headnode {head.id} has no private IP yet; try again")
        self.ui.step(f"Launching {count} worker(s)")
        min_count = None
        if p.cluster.min_workers is not None:
            have = len(self.workers_of(self.nodes()))
            min_count = max(1, min(count, p.cluster.min_workers - have))
        spec = LaunchSpec(role=WORKER, count=count, instance_type=p.ec2.worker_type,
                          image=self.provider.resolve_image(WORKER), spot=p.ec2.spot,
                          userdata=render_userdata(p, WORKER, cluster=self.name,
                                                   headnode_ip=head.private_ip),
                          shape=p.shape_hash(WORKER), min_count=min_count)
        try:
            launched = self.provider.launch(self.name, spec)
        except CloudError as exc:
            if not (spec.spot and getattr(exc, "code", "") in SPOT_FALLBACK_CODES):
                raise
            zones = ", ".join(p.ec2.availability_zones) or p.ec2.region
            self.ui.warn(f"no spot capacity for {count} {p.ec2.worker_type} worker(s) in {zones} "
                         f"({exc.code}): launching them on-demand instead (on-demand price)")
            # Same shape tag: the project still asks for spot, so the next `up` reuses them.
            launched = self.provider.launch(self.name, replace(
                spec, spot=False, extra_tags={**spec.extra_tags, TAG_MARKET: "on-demand-fallback"}))
        if len(launched) < count:
            self.ui.warn(f"EC2 gave {len(launched)} of {count} workers (min_workers allows it)")
        for n in launched:
            self.ui.track(n.id, WORKER, n.state)
        return launched

    # -- readiness ---------------------------------------------------------------------------
    def wait_ready(self, nodes: list[Node], *, fresh: bool, created: list[str] | None = None) -> list[Node]:
        """SSH answers and userdata finished on every node (workers in parallel).

        Only nodes launched in this call may have their host key pinned on first contact.
        """
        created = set(created or [])
        self._created = created
        head = self.headnode_of(nodes)
        self._door = head
        workers = [n for n in nodes if n.role == WORKER]
        self.ui.step("Waiting for nodes to be ready" if fresh else "Checking nodes")
        with self.ui.nodes_view("Waiting for nodes" if fresh else "Checking nodes", count=len(nodes)):
            # a static host is nobody's launch: its key must be known already (never accept-new)
            elastic = self.provider.elastic
            self._ready(head, allow_new=head.id in created or
                        (elastic and not self.remote.is_pinned(self.target(head))))
            if workers and elastic:
                self._serve(head)
            failed: list[tuple[Node, Exception]] = []
            if workers and self.provider.elastic:
                from swiftrun.cluster.readiness import workers_ready

                failed, workers = workers_ready(self, head, workers, created, BOOT_TIMEOUT)
            elif workers:
                from concurrent.futures import ThreadPoolExecutor   # ~10 ms: not for a warm run

                with ThreadPoolExecutor(max_workers=min(16, len(workers))) as pool:
                    futs = {pool.submit(self._ready, w, allow_new=w.id in created): w
                            for w in workers}
                    for fut, w in futs.items():
                        try:
                            fut.result()
                        except SwiftrunError as exc:
                            failed.append((w, exc))
        if failed:
            asked = len(workers)
            ok = asked - len(failed)
            floor = self.project.cluster.min_workers
            if floor is not None and ok >= floor:
                for w, exc in failed:
                    self.ui.warn(f"worker {w.id} dropped: {exc}")
                bad = [w.id for w, _ in failed if w.id in created]
                if bad:
                    self.provider.terminate(self.name, bad)
                workers = [w for w in workers if w not in [f for f, _ in failed]]
                self.ui.warn(f"continuing with {ok} of {asked} workers (min_workers = {floor})")
            else:
                raise failed[0][1]
        return [head] + workers

    def _serve(self, head: Node) -> None:
        """Put on the headnode what the workers fetch from its agent at boot and that cannot
        travel in their userdata (a large worker init script). Once per file: a rerun of `up`
        finds it there."""
        from swiftrun.node.layout import STATE_DIR
        from swiftrun.node.userdata import served_files

        for name, data in served_files(self.project).items():
            path = f"{STATE_DIR}/serve/{name}"
            self.remote.run(self.target(head), f"test -s {path} || {{ cat > {path}.tmp && "
                                               f"mv -f {path}.tmp {path}; }}",
                            stdin=data, timeout=120, check=True)
            self.ui.node("headnode", f"serves {name[:24]}... ({len(data)} bytes) to the workers")

    def _ready(self, node: Node, *, allow_new: bool) -> None:
        try:
            self._ready_or_raise(node, allow_new=allow_new)
        except BaseException as exc:
            self.ui.track(node.id, node.role, "failed", str(exc).split(";")[0][:100])
            raise

    def _booting(self, node: Node) -> bool:
        """Launched by this call, or started recently enough (by an `up` that was interrupted, a
        start after stop-headnode) that its boot may still be under way."""
        if node.id in getattr(self, "_created", ()):
            return True
        launched = node.launched
        if launched is None:
            return False
        if launched.tzinfo is None:
            launched = launched.replace(tzinfo=timezone.utc)
        return (datetime.now(timezone.utc) - launched).total_seconds() < BOOT_TIMEOUT

    def _ready_or_raise(self, node: Node, *, allow_new: bool) -> None:
        target = self.target(node)
        self.ui.track(node.id, node.role, "ssh")
        if not self.provider.elastic:
            self.remote.wait(target, STATIC_SSH_TIMEOUT, allow_new=allow_new, hint=(
                f"check that sshd runs on {target.host} and listens on port {target.port} "
                "([static] headnode/workers take host:port) and that no firewall is in the way; "
                "SWIFTRUN_STATIC_SSH_TIMEOUT=<seconds> waits longer"))
        else:
            why = self.provider.unreachable(node) if target.via is None else None
            if why:     # said at once, not after SSH_TIMEOUT seconds of "port 22 timed out"
                raise CloudError(why[0], hint=why[1])
            self.remote.wait(target, SSH_TIMEOUT, allow_new=allow_new, booting=self._booting(node))
        if not self.provider.elastic:
            self.ui.track(node.id, node.role, "ready")
            return
        deadline = time.monotonic() + BOOT_TIMEOUT
        delay, last_step = 0.3, None
        probe = (f'd={STATE_DIR}; if [ -f "$d/failed" ]; then echo "FAILED $(cat "$d/failed")"; '
                 f'elif [ -f "$d/ready" ]; then echo READY; '
                 f'else echo "BOOTING $(cat "$d/step" 2>/dev/null)"; fi')
        while True:
            state = self.remote.run(target, probe, timeout=30).stdout.strip()
            if state == "READY":
                self.ui.track(node.id, node.role, "ready")
                return
            if state.startswith("FAILED"):
                tail = self.remote.run(
                    target, f"tail -n 5 {BOOT_LOG}", timeout=30).stdout
                detail = " | ".join(line.strip() for line in tail.strip().splitlines()[-3:])
                raise CloudError(f"{target.label} failed to boot: {state[7:]} (last log lines: "
                                 f"{detail}; full log: `swiftrun logs --boot {node.id}`)")
            step = state.partition(" ")[2]
            if step and step != last_step:
                self.ui.track(node.id, node.role, "booting", step)
                last_step = step
            if time.monotonic() > deadline:
                raise CloudError(f"{target.label} still booting ({step or 'unknown step'}) after "
                                 f"{int(BOOT_TIMEOUT)}s; see `swiftrun logs --boot {node.id}`")
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    # -- static services (cluster/services.py) ------------------------------------------------
    def _up_static(self) -> UpResult:
        nodes = self.nodes()
        self.ui.step(f"Static cluster {self.name}: {len(nodes)} host(s)")
        self.wait_ready(nodes, fresh=False, created=[])
        start_services(self, nodes)
        return UpResult(nodes=nodes)

    # -- scaling and teardown ----------------------------------------------------------------
    def add(self, count: int) -> list[Node]:
        self._need_elastic("add")
        with self.lock():
            nodes = self.nodes()
            head = self.headnode_of(nodes)
            if not head or not head.live:
                raise CloudError(f"cluster {self.name!r} has no running headnode; run `swiftrun up`")
            self._check_shape([n for n in nodes if n.role == WORKER])
            self.seen.forget()
            ids: list[str] = []
            try:
                ids = [n.id for n in self._launch_workers(head, count)]
                running = self.provider.wait_running(self.name, ids)
                self.wait_ready([head] + running, fresh=True, created=ids)
            except BaseException:
                # including workers whose launch went through but whose reply was never read
                ids += self._launched_unrecorded(nodes, ids)
                if ids:
                    self.ui.warn("terminating the workers that did not come up")
                    self.provider.terminate(self.name, ids)
                raise
            return running

    def remove(self, count: int) -> list[str]:
        """Terminate the ``count`` newest workers (all of them if there are fewer)."""
        self._need_elastic("remove")
        with self.lock():
            workers = sorted(self.workers_of(self.nodes()), key=lambda n: (n.launched or 0, n.id))
            victims = [n.id for n in workers[::-1][:count]]
            if victims:
                self.seen.forget()
                self.remote.close([self.target(n) for n in workers if n.id in victims and n.ssh_host])
                self.provider.terminate(self.name, victims)
                self.remote.forget(victims)
            return victims

    def stop_headnode(self) -> tuple[str | None, list[Node]]:
        """(the headnode stopped, or None; the live workers, which keep running and billing)."""
        self._need_elastic("stop-headnode")
        with self.lock():
            nodes = self.nodes()
            head, workers = self.headnode_of(nodes), self.workers_of(nodes)
            if not head or not head.live:
                return None, workers
            self.seen.forget()
            self.provider.stop(self.name, [head.id])
            return head.id, workers

    def down(self, *, delete_key: bool = False) -> dict:
        """Terminate, wait until terminated, then delete the security group. Idempotent."""
        with self.lock():
            if not self.provider.elastic:
                return {"stopped": stop_services(self), "terminated": [], "deleted": []}
            nodes = self.nodes()
            self.seen.forget()
            ids = [n.id for n in nodes]
            # kept SSH connections to nodes that are going away end now, not at ControlPersist's end
            self.remote.close([self.target(n) for n in nodes if n.ssh_host])
            if ids:
                self.ui.step(f"Terminating {len(ids)} instance(s) of {self.name}")
                self.provider.terminate(self.name, ids)
                with self.ui.waiting("instances to terminate"):
                    self.provider.wait_gone(self.name, ids)
            self.remote.close()
            deleted = self.provider.cleanup(self.name, delete_key=delete_key)
            self.remote.forget(ids)
            return {"terminated": ids, "deleted": deleted, "stopped": []}

    def _need_elastic(self, verb: str) -> None:
        if not self.provider.elastic:    # the project asks for what its provider cannot do: bad input
            fix = ("stop the headnode host yourself: swiftrun starts and stops only its services"
                   if verb == "stop-headnode" else "edit [static] workers and run `swiftrun up`")
            raise ConfigError(f"`swiftrun {verb}` needs [cluster] provider = \"ec2\"; the "
                              f"\"static\" hosts are yours ({fix})")


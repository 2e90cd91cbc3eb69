"""`swiftrun image build`: bake an AMI with Java, Perl and Swift installed, so boots skip installs.

The bake is an ordinary headnode boot of the project's userdata under its own cluster name
(``<cluster>-image``), so it is tagged like everything else and `swiftrun down --cluster
<cluster>-image` finds whatever a crash leaves. Before the image is taken, the node's identity is
scrubbed: swiftrun's markers, units and logs, the fstab lines its boot added (the bake's scratch
disks and bucket), cloud-init's per-instance state, and the baker's authorized key, so an instance of the image boots as a fresh node and trusts no old key.
"""

from __future__ import annotations

import time
from dataclasses import replace

from swiftrun.cloud.base import HEADNODE
from swiftrun.errors import CloudError, ConfigError

SCRUB = r"""set -e
R="${SWIFTRUN_NODE_ROOT:-}"
S=""; [ "$(id -u)" = 0 ] || S="sudo -n"
for u in swiftrun-coaster.service swiftrun-worker.service swiftrun-deadman.timer swiftrun-deadman.service; do
  $S systemctl disable --now "$u" >/dev/null 2>&1 || true
done
$S rm -rf "$R/var/lib/swiftrun" "$R/etc/swiftrun" "$R/var/log/swiftrun"
$S rm -f "$R"/etc/systemd/system/swiftrun-*
# the node's own mounts (its scratch disks, the project's bucket): each after swiftrun's marker
f="$R/etc/fstab"; t="$HOME/.swiftrun-fstab.$$"
if [ -f "$f" ]; then
  awk '/^# swiftrun: the next line/ { skip = 1; next } skip { skip = 0; next } { print }' "$f" > "$t"
  $S cp "$t" "$f"; rm -f "$t"
fi
$S systemctl daemon-reload >/dev/null 2>&1 || true
if command -v cloud-init >/dev/null 2>&1; then $S cloud-init clean --logs --seed >/dev/null 2>&1 || $S cloud-init clean --logs; fi
rm -f "$HOME/.ssh/authorized_keys"
echo scrubbed
"""


def image_cluster(project) -> str:
    """The bake's own cluster name: never the project's own (cut to 40 characters, a long
    name would become itself) and, as `build_image` checks, never a cluster that exists."""
    name = project.cluster.name
    suffix = "-image"
    return f"{name[:40 - len(suffix)].rstrip('-')}{suffix}"


def build_image(project, ui, *, name: str | None = None, timeout: float = 1800) -> dict:
    """Boot, wait for ready, scrub, CreateImage, wait available, terminate. Returns the image."""
    from swiftrun.cloud.ec2 import EC2Provider
    from swiftrun.cluster.lifecycle import Cluster

    if project.cluster.provider != "ec2":
        raise ConfigError("swiftrun image build needs provider = \"ec2\"")
    bake_name = image_cluster(project)
    bake = replace(project, cluster=replace(project.cluster, name=bake_name, workers=0,
                                            min_workers=None, keep=False))
    provider = EC2Provider(bake)
    cluster = Cluster(bake, provider, ui)
    image_name = name or f"swiftrun-{project.cluster.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    image_id = None
    # The bake scrubs its node and always ends with `down`: it must run on instances it
    # launched itself, never on a cluster that happens to carry the same name.
    existing = [n for n in cluster.nodes() if n.state != "terminated"]
    if existing:
        raise ConfigError(
            f"cannot bake: cluster {bake_name!r} already has {len(existing)} instance(s) "
            f"({', '.join(n.id for n in existing)}); if it is a leftover bake, run "
            f"`swiftrun down --cluster {bake_name}`, otherwise give this project another "
            "[cluster] name")
    try:
        ui.step(f"Baking image {image_name} from a {project.ec2.headnode_type} in {project.ec2.region}")
        result = cluster.up()
        head = cluster.headnode_of(result.nodes)
        ui.step("Scrubbing the node's identity before the snapshot")
        cluster.remote.run(cluster.target(head), SCRUB, timeout=120, check=True)
        cluster.remote.close()
        tags = [{"Key": "swiftrun:cluster", "Value": bake_name}, {"Key": "swiftrun:created", "Value": "1"},
                {"Key": "swiftrun:image-of", "Value": project.cluster.name},
                {"Key": "Name", "Value": image_name}]
        reply = provider._call("create_image", InstanceId=head.id, Name=image_name,
                               Description=f"swiftrun node image for {project.cluster.name} "
                                           f"(Swift at {project.swift.home})",
                               TagSpecifications=[{"ResourceType": "image", "Tags": tags}])
        image_id = reply["ImageId"]
        ui.node("image", f"{image_id} creating")
        deadline = time.monotonic() + timeout
        delay = 1.0
        with ui.waiting(f"image {image_id} to be available"):
            while True:
                images = provider._call("describe_images", ImageIds=[image_id]).get("Images", [])
                state = images[0]["State"] if images else "pending"
                if state == "available":
                    break
                if state in ("failed", "invalid", "deregistered"):
                    raise CloudError(f"image {image_id} ended {state}; see the EC2 console")
                if time.monotonic() > deadline:
                    raise CloudError(f"image {image_id} not available after {int(timeout)}s; it may "
                                     "still finish: check `aws ec2 describe-images`")
                time.sleep(delay)
                delay = min(delay * 1.5, 15.0)
        # Snapshots are tagged once known (CreateImage's snapshot TagSpecifications are not
        # honoured everywhere), so whoever reads the bill sees what they belong to.
        snaps = [m["Ebs"]["SnapshotId"] for m in images[0].get("BlockDeviceMappings", [])
                 if m.get("Ebs", {}).get("SnapshotId")]
        if snaps:
            provider._call("create_tags", Resources=snaps, Tags=tags)
        ui.node("image", f"{image_id} available")
    finally:
        # The bake instance and its group go whatever happened; the image (if any) stays.
        cluster.down()
    return {"image_id": image_id, "name": image_name, "region": project.ec2.region}

"""What the workers need from the network at boot, and so whether they get a public IPv4 address.

AWS bills every public IPv4 address by the hour. A worker needs one only to reach the internet at
boot (there is no NAT in a default VPC): the headnode is the workers' door for everything
swiftrun does (their boot reports, the Swift tarball the headnode keeps for them, SSH through
ProxyJump). ``[ec2] worker_public_ip = "auto"`` decides from the project:

- a custom image with Swift baked in (no ``[swift] install_url``; ``swiftrun image build``
  makes one) has Perl too: no address;
- stock Ubuntu (``"auto"``), or any image Swift is installed on at boot, may lack the Perl
  modules worker.pl needs: apt needs the mirrors (the headnode still hands them Swift);
- a worker init script may download anything, and s3fs talks to S3: both need the network.
"""

from __future__ import annotations

# AWS's price of one public IPv4 address (in use or idle), since 2024-02-01, every region.
PUBLIC_IPV4_USD_PER_HOUR = 0.005


def worker_network(project) -> tuple[bool, str]:
    """(whether workers launch with a public IPv4 address, why in a few words)."""
    ec2 = project.ec2
    value = getattr(ec2, "worker_public_ip", "auto")
    if value is True:
        return True, "[ec2] worker_public_ip = true"
    if value is False:
        return False, ("[ec2] worker_public_ip = false: workers reach only the cluster (Swift "
                       "comes from the headnode)")
    needs = []
    if (getattr(ec2, "worker_image", "") or getattr(ec2, "image", "auto")) == "auto":
        needs.append("stock Ubuntu: apt installs Perl")
    elif getattr(getattr(project, "swift", None), "install_url", ""):
        # Swift installed at boot: not a baked image, so Perl may come from apt too
        needs.append("an image without Swift baked in: apt may install Perl")
    if getattr(ec2, "worker_init_script", None):
        needs.append("the worker init script may download")
    if getattr(getattr(project, "s3fs", None), "bucket", ""):
        needs.append("s3fs talks to S3")
    if needs:
        return True, "workers need the internet at boot (" + "; ".join(needs) + ")"
    return False, ("the workers' image is custom (Perl baked in) and Swift is in it or comes "
                   "from the headnode: no internet needed at boot")


def worker_public_ip(project) -> bool:
    return worker_network(project)[0]


def public_addresses(project) -> int:
    """Public IPv4 addresses the cluster holds while it runs: the headnode's, and each worker's
    when they have one."""
    workers = project.cluster.workers
    return 1 + (workers if workers and worker_public_ip(project) else 0)

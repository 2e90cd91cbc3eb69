"""The security group's port 22 rules for this machine's address: one per address, a few kept.

A laptop's address changes; each new one gets its own /32 rule on port 22. Left alone they pile
up until the group's rule quota (60 inbound rules by default) refuses the next one. swiftrun's
own rules carry the description ``swiftrun ssh <UTC time it was added>``; when a new address
needs a rule, the oldest of swiftrun's beyond :data:`KEEP_CALLER_RULES` - 1 are revoked first.
A rule with any other description (made by hand or by another tool) is never touched.
"""

from __future__ import annotations

import time

from swiftrun.errors import ConfigError

SSH_DESCRIPTION = "swiftrun ssh"
KEEP_CALLER_RULES = 3      # this machine's latest addresses that keep port 22 open


def _ranges(cidr: str) -> tuple[str, str]:
    """EC2 takes an IPv6 range only as Ipv6Ranges/CidrIpv6."""
    return ("Ipv6Ranges", "CidrIpv6") if ":" in cidr else ("IpRanges", "CidrIp")


def ssh_rule(cidr: str, now: float | None = None) -> dict:
    """The IpPermission opening tcp 22 to ``cidr``, stamped as swiftrun's."""
    ranges, key = _ranges(cidr)
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    return {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
            ranges: [{key: cidr, "Description": f"{SSH_DESCRIPTION} {stamp}"}]}


def has_ssh(perms: list[dict], cidr: str) -> bool:
    ranges, key = _ranges(cidr)
    return any(p.get("FromPort") == 22 and any(r.get(key) == cidr for r in p.get(ranges, []))
               for p in perms)


def stale_caller_rules(perms: list[dict], keep: int = KEEP_CALLER_RULES) -> list[dict]:
    """IpPermissions to revoke so that adding one more swiftrun ssh rule leaves ``keep``: the
    oldest of swiftrun's own (an unstamped one counts as oldest)."""
    ours = []
    for perm in perms:
        if perm.get("IpProtocol") != "tcp" or perm.get("FromPort") != 22 or perm.get("ToPort") != 22:
            continue
        for ranges, key in (("IpRanges", "CidrIp"), ("Ipv6Ranges", "CidrIpv6")):
            for r in perm.get(ranges, []):
                desc = r.get("Description") or ""
                if desc == SSH_DESCRIPTION or desc.startswith(SSH_DESCRIPTION + " "):
                    ours.append((desc[len(SSH_DESCRIPTION):].strip(), ranges, key, r[key]))
    ours.sort()
    drop = ours[:max(0, len(ours) - (keep - 1))]
    return [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, ranges: [{key: cidr}]}
            for _, ranges, key, cidr in drop]


def public_address(timeout: float = 5.0) -> str:
    """This machine's public IPv4 address, for ssh_cidr = "auto" (AWS's own checkip service)."""
    import urllib.request

    try:
        with urllib.request.urlopen("https://checkip.amazonaws.com", timeout=timeout) as resp:
            addr = resp.read().decode().strip()
    except OSError as exc:
        raise ConfigError(f"[ec2] ssh_cidr = \"auto\" could not learn this machine's address ({exc}); "
                          "set ssh_cidr to your address, e.g. \"203.0.113.7/32\"") from None
    return addr

"""The strict test cloud: refuse what EC2 and IAM refuse where moto accepts it (issue 12).

A WSGI middleware between the fault injector (or the plain server) and moto's app, in the moto
server's own process. :func:`tests.support.faults.build_app` always puts it there: there is no
flag, environment variable or control setting that takes it out, so the project's own tests
cannot turn it off. It reads query-protocol requests (EC2 and IAM: a form-encoded ``Action=...``
body; the SigV4 credential scope names the service and region) and answers refusals in the
service's own XML error format with AWS's codes, messages and HTTP statuses:

============================  =====================================================================
rule                          refusal
============================  =====================================================================
``userdata-size``             RunInstances whose UserData is over 16384 bytes once base64-decoded
                              -> 400 InvalidParameterValue "User data is limited to 16384 bytes"
``cidr-family``               Authorize/RevokeSecurityGroupIngress/Egress with an IPv6 CIDR in
                              ``CidrIp`` (or an IPv4 one in ``CidrIpv6``) -> 400
                              InvalidParameterValue "CIDR block ::/0 is malformed"
``key-type``                  ImportKeyPair of an OpenSSH key that is not ssh-rsa / ssh-ed25519
                              (ECDSA, DSA, security keys) -> 400 InvalidKey.Format
                              "Key is not in valid OpenSSH public key format"
``root-volume-size``          RunInstances mapping the image's root device to a VolumeSize below its
                              snapshot's size (moto's snapshot size; 8 GiB when it has none) -> 400
                              InvalidBlockDeviceMapping "Volume of size 4GB is smaller than
                              snapshot 'snap-…', expect size >= 8GB"
``profile-propagation``       RunInstances naming an instance profile made, or given its role,
                              less than ``profile_delay`` s ago -> 400 InvalidParameterValue
                              "Value (p) for parameter iamInstanceProfile.name is invalid. Invalid
                              IAM Instance Profile name" (``.arn`` / "ARN" when given by ARN)
``sg-dependency``             DeleteSecurityGroup of a group that a live instance or a standalone
                              network interface uses, or that an instance terminated less than
                              ``eni_linger`` s ago used -> 400 DependencyViolation
                              "resource sg-… has a dependent object"
``imdsv2-policy``             with ``require_imdsv2`` on: RunInstances (DryRun too) without
                              ``MetadataOptions.HttpTokens=required`` -> 403 UnauthorizedOperation
                              "You are not authorized to perform this operation. Encoded
                              authorization failure message: …"
``denied-actions``            with ``denied_actions`` naming ``ec2:CreateTags`` / ``iam:PassRole``
                              (the test account's policy lacks them): RunInstances (DryRun too)
                              carrying TagSpecifications / an IamInstanceProfile -> 403
                              UnauthorizedOperation, encoded message as above
``public-ip``                 (no refusal) after a RunInstances, an instance whose subnet maps no
                              public IP (``MapPublicIpOnLaunch`` false: any subnet made by
                              CreateSubnet, until modified), or whose request said
                              ``NetworkInterface.1.AssociatePublicIpAddress=false``, loses the
                              public IP moto gave it (moto gives one to every launch without a
                              ``SubnetId``, whatever the default subnet says) - in its state and in
                              the RunInstances reply
============================  =====================================================================

Where the wording comes from (all observed AWS replies, quoted in public issue threads):
user data: supergiant/capacity#148, dask/dask-cloudprovider#249, runs-on/runs-on#9 (and the EC2
User Guide: "limited to 16 KB, in raw form, before it is base64-encoded"); CIDR: aws/aws-cli#2846,
#2428, NixOS/nixops#683 (the raw ``<Response><Errors>`` body), hashicorp/terraform#14382; key:
StreisandEffect/streisand#1171 (an ECDSA key), aws/aws-sdk-go#176, aws/aws-cdk#25929 (the API
reference: "an RSA or ED25519 key pair"); root volume: scylladb/scylladb#6999,
openshift/origin-ci-tool#153, AviatrixSystems/terraform-modules#105 (AWS's text has two spaces
before "snapshot"; kept); profile: aws/aws-sdk-js-v3#5253 (a just-made profile),
hashicorp/terraform-provider-aws#27516, lacework/go-sdk#1045 and databricks/terraform-provider-
databricks#1805 (the ``.arn`` / "ARN" form); dependency: lianghong/delete_vpc#10,
cloud-barista/cb-spider#460 (right after terminating); IMDSv2: hashicorp/packer#11398 (403, an
SCP denying RunInstances on ``ec2:MetadataHttpTokens``), aws/karpenter-provider-aws#9018 (the
dry run is denied too). An IPv4 value in ``CidrIpv6`` gets the same "CIDR block … is malformed"
(no reply for that case was found; it is EC2's one wording for a CIDR of the wrong form).

Scope, on purpose: a RunInstances ``DryRun`` is only checked by ``imdsv2-policy`` and
``denied-actions`` (a dry run checks permissions, of what it is given: tags, profile; nothing says EC2 checks sizes or profiles in it, and a test cloud stricter
than AWS would fail code that works). Launch templates are not looked into.

The bypass header (``X-Testcloud-Bypass``, sent by the instance simulator so the fault injector
lets it through) exempts nothing here: every rule is about a write, and the simulator's writes
(Stop/TerminateInstances on an OS shutdown) are writes like anyone's; its reads (Describe*) meet
no rule anyway.

Control endpoint (JSON on the same port): ``GET /_strict`` returns the settings, the rule names
and ``enforced`` (per rule, how often it refused or corrected since the last reset; each time is
also a line on the server's stderr, i.e. in moto.log); ``POST /_strict`` with a JSON object
changes settings - ``require_imdsv2`` (bool, default false: the test account's policy),
``denied_actions`` (a list of ``ec2:CreateTags`` / ``iam:PassRole``, default empty),
``profile_delay`` and ``eni_linger`` (seconds, default 2, from 0.5 to 120) - and nothing else:
any other key is refused with 400, so no request can switch a rule off. ``DELETE /_strict`` and
every ``POST /moto-api/reset`` go back to the defaults and forget what was tracked.
:func:`set_strict` / :func:`strict_state` are the client side.

Self-contained (moto + stdlib) like faults.py, which loads it by path.
"""

from __future__ import annotations

import base64
import copy
import io
import ipaddress
import json
import re
import sys
import threading
import time
import traceback
import urllib.request
import uuid
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

CONTROL_PATH = "/_strict"
RESET_PATH = "/moto-api/reset"
BYPASS_HEADER = "X-Testcloud-Bypass"    # faults.BYPASS_HEADER; deliberately not honoured here
ACCOUNT_ID = "123456789012"             # moto's default account
DEFAULT_REGION = "us-east-1"            # moto's region for a request without a credential scope
USERDATA_LIMIT = 16384                  # bytes, raw (before base64)
DEFAULT_ROOT_SNAPSHOT_GIB = 8           # when moto knows no size for the image's root snapshot
DEFAULTS: dict[str, Any] = {"require_imdsv2": False, "profile_delay": 2.0, "eni_linger": 2.0,
                            "denied_actions": []}
# What a launch may need besides ec2:RunInstances: tags in the same call, passing a role
DENIABLE = ("ec2:CreateTags", "iam:PassRole")
DELAY_RANGE = (0.5, 120.0)              # a delay cannot be 0: that would switch its rule off
RULES = ("userdata-size", "cidr-family", "key-type", "root-volume-size", "profile-propagation",
         "sg-dependency", "imdsv2-policy", "denied-actions", "public-ip")

_SCOPE_RE = re.compile(r"Credential=[^/,\s]+/[^/]+/([^/]+)/([^/]+)/aws4_request")
_ACCEPTED_KEY_TYPES = ("ssh-rsa", "ssh-ed25519")
_OPENSSH_KEY_TYPE_RE = re.compile(r"^(ssh-[a-z0-9-]+|ecdsa-sha2-\S+|sk-\S+@openssh\.com)$")
_REASONS = {400: "Bad Request", 403: "Forbidden"}


class Refusal(Exception):
    def __init__(self, rule: str, code: str, message: str, status: int = 400):
        super().__init__(f"{code}: {message}")
        self.rule, self.code, self.message, self.status = rule, code, message, status


# -- error bodies ----------------------------------------------------------------------------------
def ec2_error_xml(code: str, message: str) -> bytes:
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            f"<Response><Errors><Error><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{uuid.uuid4()}</RequestID></Response>").encode()


def iam_error_xml(code: str, message: str) -> bytes:
    return ("<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\">"
            f"<Error><Type>Sender</Type><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>").encode()


def error_body(service: str, code: str, message: str) -> bytes:
    return iam_error_xml(code, message) if service == "iam" else ec2_error_xml(code, message)


# -- requests --------------------------------------------------------------------------------------
class Request:
    """A query-protocol request: service and region (SigV4 scope), Action and its parameters."""

    def __init__(self, service: str, region: str, action: str, params: dict[str, str]):
        self.service, self.region, self.action, self.params = service, region, action, params

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name, default)

    def flag(self, name: str) -> bool:
        return str(self.params.get(name, "")).lower() == "true"

    def members(self, prefix: str) -> dict[str, dict[str, str]]:
        """``{"1": {"DeviceName": ..., "Ebs.VolumeSize": ...}, ...}`` of ``prefix.N.*``."""
        out: dict[str, dict[str, str]] = {}
        head = prefix + "."
        for key, value in self.params.items():
            if key.startswith(head):
                index, _, rest = key[len(head):].partition(".")
                out.setdefault(index, {})[rest] = value
        return out


def _read_body(environ: dict) -> bytes:
    """The request body, put back so the wrapped app reads it again (as faults.py does)."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def parse_request(environ: dict) -> Request | None:
    params = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""),
                                           keep_blank_values=True).items()}
    ctype = environ.get("CONTENT_TYPE", "")
    if (environ.get("REQUEST_METHOD") == "POST"
            and ctype.startswith("application/x-www-form-urlencoded")):
        form = parse_qs(_read_body(environ).decode("utf-8", "replace"), keep_blank_values=True)
        params.update({k: v[0] for k, v in form.items()})
    action = params.get("Action")
    if not action:
        return None
    match = _SCOPE_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
    region, service = (match.group(1), match.group(2)) if match else (DEFAULT_REGION, "")
    return Request(service, region, action, params)


def _call(app: Callable, environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run the wrapped app to completion: (status, headers, body)."""
    got: dict[str, Any] = {}
    chunks: list[bytes] = []

    def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
        got["status"], got["headers"] = status, list(headers)
        return chunks.append

    result = app(environ, start_response)
    try:
        for chunk in result:
            chunks.append(chunk)
    finally:
        if hasattr(result, "close"):
            result.close()
    return got["status"], got["headers"], b"".join(chunks)


def _ok(status: str) -> bool:
    return status.startswith("200")


# -- the middleware --------------------------------------------------------------------------------
class StrictCloud:
    """WSGI middleware: refuses, in front of ``app`` (moto), what EC2 and IAM refuse."""

    def __init__(self, app: Callable):
        self.app = app
        self.lock = threading.Lock()
        self.reset()
        self._before: dict[tuple[str, str], Callable[[Request], None]] = {
            ("ec2", "RunInstances"): self._check_run_instances,
            ("ec2", "AuthorizeSecurityGroupIngress"): self._check_cidrs,
            ("ec2", "AuthorizeSecurityGroupEgress"): self._check_cidrs,
            ("ec2", "RevokeSecurityGroupIngress"): self._check_cidrs,
            ("ec2", "RevokeSecurityGroupEgress"): self._check_cidrs,
            ("ec2", "ImportKeyPair"): self._check_key,
            ("ec2", "DeleteSecurityGroup"): self._check_group_dependents,
        }
        self._after: dict[tuple[str, str], Callable[[Request, bytes], bytes]] = {
            ("ec2", "RunInstances"): self._after_run_instances,
            ("ec2", "TerminateInstances"): self._after_terminate,
            ("iam", "CreateInstanceProfile"): self._after_profile_change,
            ("iam", "AddRoleToInstanceProfile"): self._after_profile_change,
            ("iam", "DeleteInstanceProfile"): self._after_profile_delete,
        }

    # -- control -----------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.settings = copy.deepcopy(DEFAULTS)
            self.profile_changed: dict[str, float] = {}     # profile name -> monotonic time
            self.terminated: dict[str, float] = {}          # instance id -> monotonic time
            self.enforced: dict[str, int] = {}     # rule -> times it refused or corrected

    def configure(self, spec: Any) -> None:
        if not isinstance(spec, dict):
            raise ValueError("send a JSON object of settings")
        unknown = sorted(set(spec) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}: the settings are "
                             f"{', '.join(DEFAULTS)}; no rule can be switched off")
        new = {}
        for key, value in spec.items():
            if key == "require_imdsv2":
                if not isinstance(value, bool):
                    raise ValueError("require_imdsv2 is true or false")
                new[key] = value
            elif key == "denied_actions":
                if not isinstance(value, list) or any(v not in DENIABLE for v in value):
                    raise ValueError(f"denied_actions is a list of {', '.join(DENIABLE)}")
                new[key] = sorted(set(value))
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{key} is a number of seconds")
                lo, hi = DELAY_RANGE
                if not lo <= value <= hi:
                    raise ValueError(f"{key} must be from {lo} to {hi} seconds")
                new[key] = float(value)
        with self.lock:
            self.settings.update(new)

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {**copy.deepcopy(self.settings), "rules": list(RULES),
                    "enforced": dict(self.enforced)}

    def _control(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if method == "POST":
                self.configure(json.loads(_read_body(environ) or b"{}"))
            elif method == "DELETE":
                self.reset()
            elif method != "GET":
                raise ValueError(f"method {method} not allowed")
            payload, status = json.dumps(self.state()).encode(), "200 OK"
        except Exception as exc:
            payload, status = json.dumps({"error": str(exc)}).encode(), "400 Bad Request"
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(payload)))])
        return [payload]

    # -- WSGI --------------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == CONTROL_PATH:
            return self._control(environ, start_response)
        if path == RESET_PATH and environ.get("REQUEST_METHOD") == "POST":
            self.reset()
            return self.app(environ, start_response)
        req = parse_request(environ)
        if req is None:
            return self.app(environ, start_response)
        key = (req.service, req.action)
        check = self._before.get(key)
        if check is not None:
            try:
                check(req)
            except Refusal as refusal:
                return self._refuse(req, refusal, start_response)
            except Exception:   # a bug here must not look like an AWS answer; let moto answer
                traceback.print_exc(file=sys.stderr)
        after = self._after.get(key)
        if after is None:
            return self.app(environ, start_response)
        status, headers, body = _call(self.app, environ)
        if _ok(status):
            try:
                body = after(req, body)
            except Exception:
                traceback.print_exc(file=sys.stderr)
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    def _count(self, rule: str, what: str) -> None:
        with self.lock:
            self.enforced[rule] = self.enforced.get(rule, 0) + 1
        # the server's log (moto.log of the session fixture) says why a call was refused
        print(f"strict test cloud: {rule}: {what}", file=sys.stderr, flush=True)

    def _refuse(self, req: Request, refusal: Refusal, start_response: Callable) -> Iterable[bytes]:
        self._count(refusal.rule, f"refused {req.service} {req.action} ({refusal.code}: "
                                  f"{refusal.message[:200]})")
        body = error_body(req.service, refusal.code, refusal.message)
        start_response(f"{refusal.status} {_REASONS.get(refusal.status, 'Error')}",
                       [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
        return [body]

    def _setting(self, name: str) -> Any:
        with self.lock:
            return self.settings[name]

    # -- RunInstances ------------------------------------------------------------------------
    def _check_run_instances(self, req: Request) -> None:
        self._check_imdsv2(req)
        self._check_denied(req)
        if req.flag("DryRun"):
            return          # a dry run checks permissions (above), not the rest
        self._check_userdata(req)
        self._check_root_volume(req)
        self._check_profile(req)

    def _check_imdsv2(self, req: Request) -> None:
        if not self._setting("require_imdsv2"):
            return
        if (req.get("MetadataOptions.HttpTokens") or "").lower() == "required":
            return
        context = {"allowed": False, "explicitDeny": True, "matchedStatements": {"items": [{
            "statementId": "RequireIMDSv2", "effect": "DENY", "conditions": {"items": [{
                "key": "ec2:MetadataHttpTokens", "values": {"items": [{"value": "required"}]}}]}}]},
            "context": {"action": "ec2:RunInstances",
                        "resource": f"arn:aws:ec2:{req.region}:{ACCOUNT_ID}:instance/*"}}
        raise _denied("imdsv2-policy", context)

    def _check_denied(self, req: Request) -> None:
        denied = self._setting("denied_actions")
        needs = []
        if any(k.startswith("TagSpecification.") for k in req.params):
            needs.append(("ec2:CreateTags", f"arn:aws:ec2:{req.region}:{ACCOUNT_ID}:instance/*"))
        if req.get("IamInstanceProfile.Arn") or req.get("IamInstanceProfile.Name"):
            needs.append(("iam:PassRole", f"arn:aws:iam::{ACCOUNT_ID}:role/*"))
        for action, resource in needs:
            if action in denied:    # no statement allows it: an implicit deny
                raise _denied("denied-actions", {"allowed": False, "explicitDeny": False,
                                                 "matchedStatements": {"items": []},
                                                 "context": {"action": action,
                                                             "resource": resource}})

    def _check_userdata(self, req: Request) -> None:
        value = req.get("UserData")
        if not value:
            return
        try:
            raw = base64.b64decode(value, validate=False)
        except (ValueError, TypeError):
            return          # not base64: moto's (or EC2's) own business
        if len(raw) > USERDATA_LIMIT:
            raise Refusal("userdata-size", "InvalidParameterValue",
                          f"User data is limited to {USERDATA_LIMIT} bytes")

    def _check_root_volume(self, req: Request) -> None:
        mappings = req.members("BlockDeviceMapping")
        if not mappings:
            return
        backend = _ec2(req.region)
        ami = backend.amis.get(req.get("ImageId") or "")
        if ami is None:
            return          # unknown image: moto answers InvalidAMIID.NotFound
        root = getattr(ami, "root_device_name", None) or "/dev/sda1"
        for mapping in mappings.values():
            if mapping.get("DeviceName") != root or not mapping.get("Ebs.VolumeSize"):
                continue
            try:
                size = int(mapping["Ebs.VolumeSize"])
            except ValueError:
                continue
            snapshot = None
            if mapping.get("Ebs.SnapshotId"):
                snapshot = backend.snapshots.get(mapping["Ebs.SnapshotId"])
            else:
                snapshot = getattr(ami, "ebs_snapshot", None)
            need = _snapshot_size(snapshot)
            if size < need:
                snap_id = getattr(snapshot, "id", None) or mapping.get("Ebs.SnapshotId") or ""
                raise Refusal("root-volume-size", "InvalidBlockDeviceMapping",
                              f"Volume of size {size}GB is smaller than  snapshot '{snap_id}', "
                              f"expect size >= {need}GB")

    def _check_profile(self, req: Request) -> None:
        arn, name = req.get("IamInstanceProfile.Arn"), req.get("IamInstanceProfile.Name")
        if not arn and not name:
            return
        profile = name or (arn or "").rsplit("/", 1)[-1]
        delay = self._setting("profile_delay")
        with self.lock:
            changed = self.profile_changed.get(profile)
        if changed is None or time.monotonic() - changed >= delay:
            return
        if name:
            message = (f"Value ({name}) for parameter iamInstanceProfile.name is invalid. "
                       "Invalid IAM Instance Profile name")
        else:
            message = (f"Value ({arn}) for parameter iamInstanceProfile.arn is invalid. "
                       "Invalid IAM Instance Profile ARN")
        raise Refusal("profile-propagation", "InvalidParameterValue", message)

    def _after_run_instances(self, req: Request, body: bytes) -> bytes:
        """Take away the public IP moto gave an instance whose subnet (or request) says none."""
        if req.flag("DryRun"):
            return body
        explicit = None
        for nic in req.members("NetworkInterface").values():
            if nic.get("DeviceIndex") == "0" and nic.get("AssociatePublicIpAddress"):
                explicit = nic["AssociatePublicIpAddress"].lower() == "true"
        backend = _ec2(req.region)
        text = body.decode("utf-8")
        for iid in dict.fromkeys(re.findall(r"<instanceId>(i-[0-9a-f]+)</instanceId>", text)):
            instance = backend.get_instance(iid)
            nic = instance.nics.get(0)
            if nic is None or not nic.public_ip:
                continue
            subnet = nic.subnet
            maps = str(getattr(subnet, "map_public_ip_on_launch", False)).lower() == "true"
            if (maps if explicit is None else explicit):
                continue
            public_ip, public_dns = nic.public_ip, instance.public_dns_name
            nic.public_ip = None
            nic.public_ip_auto_assign = False       # and none after a stop / start either
            instance.associate_public_ip = False
            text = _scrub_public_address(text, public_ip, public_dns)
            self._count("public-ip", f"took public IP {public_ip} from {iid} (its subnet or "
                                     "request maps none)")
        return text.encode("utf-8")

    # -- security groups, key pairs ----------------------------------------------------------
    def _check_cidrs(self, req: Request) -> None:
        for key, value in req.params.items():
            last = key.rsplit(".", 1)[-1]
            if last == "CidrIp" and _family(value) != 4:
                bad = value
            elif last == "CidrIpv6" and _family(value) != 6:
                bad = value
            else:
                continue
            raise Refusal("cidr-family", "InvalidParameterValue", f"CIDR block {bad} is malformed")

    def _check_key(self, req: Request) -> None:
        material = req.get("PublicKeyMaterial") or ""
        try:
            text = base64.b64decode(material).decode("ascii", "replace").strip()
        except (ValueError, TypeError):
            return
        kind = text.split(None, 1)[0] if text else ""
        if _OPENSSH_KEY_TYPE_RE.match(kind) and kind not in _ACCEPTED_KEY_TYPES:
            raise Refusal("key-type", "InvalidKey.Format",
                          "Key is not in valid OpenSSH public key format")

    def _check_group_dependents(self, req: Request) -> None:
        backend = _ec2(req.region)
        if req.get("GroupId"):
            group = backend.get_security_group_from_id(req.get("GroupId"))
        elif req.get("GroupName"):
            group = backend.get_security_group_from_name(req.get("GroupName"))
        else:
            return
        if group is None:
            return          # moto answers InvalidGroup.NotFound
        linger = self._setting("eni_linger")
        now = time.monotonic()
        with self.lock:
            terminated = dict(self.terminated)
        dependent = False
        for instance in backend.all_instances():
            ids = _group_ids(instance.security_groups or [])
            for nic in instance.nics.values():
                ids |= _group_ids(nic.group_set)
            if group.id not in ids:
                continue
            if instance._state.name != "terminated":
                dependent = True
            elif instance.id in terminated and now - terminated[instance.id] < linger:
                dependent = True     # its network interface has not let go yet
            if dependent:
                break
        if not dependent:
            dependent = any(eni.instance is None and group.id in _group_ids(eni.group_set)
                            for eni in list(backend.enis.values()))
        if dependent:
            raise Refusal("sg-dependency", "DependencyViolation",
                          f"resource {group.id} has a dependent object")

    def _after_terminate(self, req: Request, body: bytes) -> bytes:
        now = time.monotonic()
        ids = [v for k, v in req.params.items() if re.fullmatch(r"InstanceId\.\d+", k)]
        with self.lock:
            for iid in ids:
                self.terminated.setdefault(iid, now)    # the first termination starts the linger
        return body

    # -- IAM ---------------------------------------------------------------------------------
    def _after_profile_change(self, req: Request, body: bytes) -> bytes:
        name = req.get("InstanceProfileName")
        if name:
            with self.lock:
                self.profile_changed[name] = time.monotonic()
        return body

    def _after_profile_delete(self, req: Request, body: bytes) -> bytes:
        with self.lock:
            self.profile_changed.pop(req.get("InstanceProfileName") or "", None)
        return body


# -- helpers ---------------------------------------------------------------------------------------
def _denied(rule: str, context: dict) -> Refusal:
    """EC2's UnauthorizedOperation, with the decision encoded as `aws sts
    decode-authorization-message` would decode it."""
    encoded = base64.urlsafe_b64encode(json.dumps(context).encode()).decode().rstrip("=")
    return Refusal(rule, "UnauthorizedOperation", "You are not authorized to perform this "
                   f"operation. Encoded authorization failure message: {encoded}", status=403)


def _ec2(region: str) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[ACCOUNT_ID][region]


def _group_ids(groups: Iterable[Any]) -> set[str]:
    return {getattr(g, "id", g) for g in groups}


def _snapshot_size(snapshot: Any) -> int:
    try:
        size = int(snapshot.volume_size) if snapshot is not None else 0
    except (AttributeError, TypeError, ValueError):
        size = 0
    return size if size > 0 else DEFAULT_ROOT_SNAPSHOT_GIB


def _family(value: str) -> int | None:
    try:
        return ipaddress.ip_network(value.strip(), strict=False).version
    except ValueError:
        return 6 if ":" in value else (4 if "." in value else None)


def _scrub_public_address(text: str, ip: str, dns: str | None) -> str:
    """Drop one public address from a RunInstances reply: the instance's ipAddress, its public
    DNS name, and the ENI association elements that carry it."""
    ip_re = re.escape(ip)
    text = re.sub(rf"<ipAddress>{ip_re}</ipAddress>", "", text)
    inside = r"(?:(?!</association>).)*?"
    text = re.sub(rf"<association>{inside}{ip_re}{inside}</association>", "", text, flags=re.S)
    if dns:
        text = text.replace(f"<dnsName>{dns}</dnsName>", "<dnsName></dnsName>")
    return text


# -- client side -----------------------------------------------------------------------------------
def _control_request(endpoint: str, method: str, body: bytes | None = None) -> dict[str, Any]:
    req = urllib.request.Request(endpoint.rstrip("/") + CONTROL_PATH, data=body, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def set_strict(endpoint: str, **settings: Any) -> dict[str, Any]:
    """Change the strict layer's settings (``require_imdsv2``, ``denied_actions``,
    ``profile_delay``, ``eni_linger``) on the server at ``endpoint``; returns its state. A moto reset undoes it."""
    return _control_request(endpoint, "POST", json.dumps(settings).encode())


def strict_state(endpoint: str) -> dict[str, Any]:
    """``{"require_imdsv2", "profile_delay", "eni_linger", "rules", "enforced": {rule: n}}``."""
    return _control_request(endpoint, "GET")

"""What an AWS call becomes when it cannot be made at all, the same for EC2, IAM and S3.

Refusals (ClientError) stay with each caller, which knows what the operation meant (``PLAIN``
holds the EC2 provider's words for the common ones); these two failures mean the same thing
everywhere: no credentials (the user must say which), or no route to the endpoint, said at the
first attempt (``fail_fast_until_reached``). Nothing here imports botocore until a call is made.
"""

from __future__ import annotations

from contextlib import contextmanager

from swiftrun.errors import CloudError, ConfigError

NO_CREDENTIALS = ("no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                  "AWS_SECRET_ACCESS_KEY, [ec2] profile, or [ec2] credentials_file "
                  "(the IAM credentials.csv)")


# Plain words for the EC2 refusals people meet when launching (the EC2 provider adds them).
PLAIN = {
    "UnauthorizedOperation": "these AWS credentials may not do this ({op}); ask for ec2:{op} permission",
    "AuthFailure": "AWS rejected the credentials; check them with `aws sts get-caller-identity`",
    "InstanceLimitExceeded": "the account's instance limit in this region is reached; terminate "
                             "instances or ask AWS for a higher limit",
    "VcpuLimitExceeded": "the account's vCPU limit for this instance family is reached; use a "
                         "smaller type or fewer workers, or ask AWS for a higher limit",
    "InsufficientInstanceCapacity": "AWS has no capacity for this instance type in this zone right "
                                    "now; try another type or zone, or later",
    "InvalidAMIID.NotFound": "the image does not exist in this region; check [ec2] image",
    "InvalidAMIID.Malformed": "the image id is malformed; check [ec2] image",
    "OptInRequired": "this region or service needs to be enabled for the account first",
    "InvalidKeyPair.NotFound": "the key pair is missing in this region",
    "InvalidParameterValue": "EC2 refused a value",
    "Unsupported": "this instance type is not offered here; try another type or zone",
    "SpotMaxPriceTooLow": "the spot price is above the maximum price allowed here right now",
    "MaxSpotInstanceCountExceeded": "the account's spot instance limit in this region is reached",
}


@contextmanager
def reaching(what: str, endpoint=lambda: ""):
    """Turn botocore's no-credentials and cannot-connect errors into one-line swiftrun errors
    (``endpoint()``: the URL asked, when the error does not say)."""
    import botocore.exceptions as bex
    from botocore.parsers import ResponseParserError

    try:
        yield
    except bex.NoCredentialsError:
        raise ConfigError(NO_CREDENTIALS) from None
    except ResponseParserError:     # something answered, but not in AWS's words
        raise CloudError(
            f"{what} at {endpoint() or 'its endpoint'} did not answer as AWS does (a proxy or "
            "captive portal in the way?): check the network, HTTPS_PROXY and, if set, "
            "AWS_ENDPOINT_URL") from None
    except bex.ConnectionError as exc:     # refused, timed out, no route, proxy, TLS
        url = exc.kwargs.get("endpoint_url") or endpoint() or "its endpoint"
        why = str(exc.kwargs.get("error") or exc)
        low = why.lower()
        why = ("timed out" if "timed out" in low else "connection refused" if "refused" in low
               else "its name does not resolve" if "resolve" in low else why.splitlines()[0][:160])
        raise CloudError(
            f"cannot reach {what} at {url} ({why}): check the network and any proxy "
            "(HTTPS_PROXY), the region ([ec2] region, SWIFTRUN_REGION) and, if set, "
            "AWS_ENDPOINT_URL") from None


def fail_fast_until_reached(provider):
    """A botocore ``needs-retry`` handler: until the endpoint has answered once
    (``provider.reached``), a connection that cannot be made is not retried (botocore's own
    retries would keep a wrong endpoint silent for 13-25 s); afterwards it is, as usual."""
    import botocore.exceptions as bex

    def handler(caught_exception=None, **_):
        if not provider.reached and isinstance(caught_exception, bex.ConnectionError):
            raise caught_exception
        return None

    return handler


def aws_config_problem(project, kind: str, path: str = "") -> str:
    """The one line for a profile that is not there (``kind="profile"``) or an AWS config or
    credentials file botocore cannot parse (``"parse"``), naming the setting or variable."""
    import os

    env = os.environ
    config = env.get("AWS_CONFIG_FILE") or "~/.aws/config"
    if kind == "profile":
        if project.ec2.profile:
            return (f"[ec2] profile = {project.ec2.profile!r}: no such AWS profile in {config} "
                    "(list them with `aws configure list-profiles`, or remove the key)")
        for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            if env.get(var):
                return (f"{var}={env[var]!r}: no such AWS profile in {config} or the credentials "
                        f"file; set {var} to one of `aws configure list-profiles` or unset it")
        return "the AWS profile asked for does not exist (check AWS_PROFILE and [ec2] profile)"
    shown = os.path.expanduser(path) if path else ""
    for var, default in (("AWS_CONFIG_FILE", "~/.aws/config"),
                         ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")):
        given = env.get(var)
        candidates = [given] if given else [default]
        if shown and any(os.path.abspath(os.path.expanduser(c)) == os.path.abspath(shown)
                         for c in candidates):
            where = f"{var}={given!r}" if given else default
            fix = f"fix its [profile] lines or point {var} at a good file (or unset it)" if given \
                else "fix its [profile] lines (see `aws configure`)"
            return f"{where}: not a valid AWS config file (botocore cannot parse it); {fix}"
    return (f"{path or 'an AWS config file'}: not a valid AWS config file (botocore cannot parse "
            "it); check AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE")

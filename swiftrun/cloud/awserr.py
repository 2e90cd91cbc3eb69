"""What an AWS call becomes when it cannot be made at all, the same for EC2, IAM and S3.

Refusals (ClientError) stay with each caller, which knows what the operation meant; these two
failures mean the same thing everywhere: no credentials (the user must say which), or no route
to the endpoint. Nothing here imports botocore until a call is made.
"""

from __future__ import annotations

from contextlib import contextmanager

from swiftrun.errors import CloudError, ConfigError

NO_CREDENTIALS = ("no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                  "AWS_SECRET_ACCESS_KEY, [ec2] profile, or [ec2] credentials_file "
                  "(the IAM credentials.csv)")


@contextmanager
def reaching(what: str):
    """Turn botocore's no-credentials and cannot-connect errors into one-line swiftrun errors."""
    import botocore.exceptions as bex

    try:
        yield
    except bex.NoCredentialsError:
        raise ConfigError(NO_CREDENTIALS) from None
    except bex.EndpointConnectionError as exc:
        raise CloudError(f"cannot reach {what}: {exc}") from None


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

"""The boto3 session a project's EC2 calls use, and which credentials it found."""

from __future__ import annotations

from swiftrun.cloud.awserr import NO_CREDENTIALS, aws_config_problem
from swiftrun.errors import ConfigError


def make_session(project):
    """A boto3 session from the project: credentials.csv, a profile, or the standard chain."""
    import boto3
    import botocore.exceptions

    from swiftrun.project.credentials import session_kwargs

    try:
        session = boto3.Session(**session_kwargs(project))
        creds = session.get_credentials()
    except botocore.exceptions.ProfileNotFound:
        raise ConfigError(aws_config_problem(project, "profile")) from None
    except botocore.exceptions.ConfigParseError as exc:
        raise ConfigError(aws_config_problem(project, "parse", exc.kwargs.get("path", ""))) from None
    if creds is None:
        raise ConfigError(NO_CREDENTIALS)
    return session


def credential_source(session) -> str:
    creds = session.get_credentials()
    return getattr(creds, "method", "unknown") if creds else "none"

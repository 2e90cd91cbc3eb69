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
    # Timestamps stay text, as the AWS CLI keeps them: botocore's default runs each through
    # dateutil, half the time of reading 200 instances. The one swiftrun reads (LaunchTime) is
    # parsed where it is used (cloud.ec2.launch_time).
    session._session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=_as_text)
    return session


def _as_text(value):
    return value


def credential_source(session) -> str:
    creds = session.get_credentials()
    return getattr(creds, "method", "unknown") if creds else "none"

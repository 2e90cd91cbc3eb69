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

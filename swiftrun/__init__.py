"""swiftrun: run Swift (Swift/K 0.96) workflows on Amazon EC2 with one command."""

__version__ = "0.1.0"

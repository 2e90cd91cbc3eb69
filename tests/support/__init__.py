"""Test-only machinery: real OpenSSH sshd processes on loopback, the moto test cloud, stand-ins."""

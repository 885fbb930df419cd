"""Checksums of files (sha256 for everything mr_tl records; MD5 only where Keras pins one)."""

import hashlib


def file_digest(path, algorithm="sha256"):
    """Hex digest of the file at ``path``, read in blocks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()

"""Pseudonymisation: HMAC-SHA256 of PII with a secret key, computed by Spark itself (no Python UDF).

HMAC(K, m) = SHA256((K xor opad) || SHA256((K xor ipad) || m)) for a 64-byte block; the two padded keys are
constants computed once on the driver, so the per-row work is two native sha2 calls.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path

from pyspark.sql import Column
from pyspark.sql import functions as F

from lib.config import Config

_BLOCK = 64


class MissingKey(RuntimeError):
    pass


def pii_key(config: Config) -> bytes:
    """The key from the environment variable named by ``salt_secret_name``.

    Without one, a local lakehouse gets a random key kept in ``<lakehouse>/_secrets`` (owner-only), so local runs
    work and hashes stay stable across runs; a remote lakehouse (s3a://, abfss://, dbfs:/) must be given a key.
    """
    value = os.environ.get(config.salt_secret_name)
    if value:
        return value.encode()
    if "://" in config.lakehouse_root or config.lakehouse_root.startswith("dbfs:"):
        raise MissingKey(
            f"set the PII hashing key in environment variable {config.salt_secret_name} "
            f"(or point salt_secret_name at the variable that holds it)"
        )
    path = Path(config.lakehouse_root) / "_secrets" / "pii_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path.read_text().strip().encode()


def keyed_hash(value: Column, key: bytes) -> Column:
    """Hex HMAC-SHA256 of a string column (null stays null)."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner_pad = bytes(b ^ 0x36 for b in key)
    outer_pad = bytes(b ^ 0x5C for b in key)
    message = F.encode(value, "UTF-8")
    inner = F.unhex(F.sha2(F.concat(F.lit(inner_pad), message), 256))
    return F.when(value.isNotNull(), F.sha2(F.concat(F.lit(outer_pad), inner), 256))

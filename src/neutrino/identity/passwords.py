"""Password hashing with argon2id.

The cost is lower than argon2-cffi's defaults (64 MiB, 3 passes, 4 lanes) so that one
password authentication stays well under 20 ms, but the algorithm stays argon2id. Hashes
made with other parameters still verify; `needs_rehash` tells when to upgrade them.
"""

from __future__ import annotations

import contextlib

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher(time_cost=2, memory_cost=12288, parallelism=1, type=Type.ID)

# verified against when the user does not exist, so a wrong name costs as much as a wrong password
_UNKNOWN_USER_HASH = _hasher.hash("neutrino: no such user")


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string, ~100 characters) of `password`."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches `password_hash`; False when there is no hash."""
    if password_hash is None:
        _spend_time_anyway(password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether `password_hash` was made with other parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def _spend_time_anyway(password: str) -> None:
    with contextlib.suppress(VerificationError):
        _hasher.verify(_UNKNOWN_USER_HASH, password)


def verify_unknown_user(password: str) -> bool:
    """Spend one verification's time for a user that does not exist; always False."""
    _spend_time_anyway(password)
    return False

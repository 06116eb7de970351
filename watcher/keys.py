"""AWS access key ids as the watcher shows and keeps them: masked, never whole.

A key id is not a secret, but it names a credential and ties its holder to every call it
signed; logs and the state file are read by more people than the credential's owner. The full
value lives only in memory, where a LookupEvents query needs it.
"""

from __future__ import annotations

import hashlib
import re

KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])")


def mask_key_id(key_id: str) -> str:
    """``ASIA…WXYZ``: enough to tell keys apart by eye, not enough to name the credential."""
    return f"{key_id[:4]}…{key_id[-4:]}"


def stored_key(key: str) -> str:
    """What the state file keeps for a session key: an access key id masked, with a digest so
    two keys sharing their ends stay two sessions; anything else (an event id) as it is."""
    if KEY_ID.fullmatch(key) is None:
        return key
    return f"{mask_key_id(key)}#{hashlib.sha256(key.encode()).hexdigest()[:16]}"

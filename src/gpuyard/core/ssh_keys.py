"""SSH public keys: parse an OpenSSH ``authorized_keys`` line and compute its SHA256 fingerprint."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime

from gpuyard.core.errors import InvalidRequest

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
MAX_KEY_LENGTH = 16_384


@dataclass(frozen=True, slots=True)
class ParsedKey:
    type: str
    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    @property
    def line(self) -> str:
        text = f"{self.type} {base64.b64encode(self.blob).decode()}"
        return f"{text} {self.comment}" if self.comment else text


def parse_public_key(text: str) -> ParsedKey:
    """Parse ``"<type> <base64> [comment]"``; anything else is a clear ``InvalidRequest``."""
    if len(text) > MAX_KEY_LENGTH:
        raise InvalidRequest("SSH key is too long", param="public_key")
    parts = text.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise InvalidRequest(
            "not an OpenSSH public key: expected '<type> <base64> [comment]' with a type such as "
            "ssh-ed25519 or ssh-rsa (the contents of ~/.ssh/id_ed25519.pub)",
            param="public_key",
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest("SSH key data is not valid base64", param="public_key") from exc
    # The blob starts with the key type as a length-prefixed string.
    if (
        len(blob) < 4
        or blob[4 : 4 + int.from_bytes(blob[:4], "big")].decode("ascii", "replace") != parts[0]
    ):
        raise InvalidRequest("SSH key data does not match its type", param="public_key")
    comment = parts[2].strip() if len(parts) > 2 else ""
    return ParsedKey(type=parts[0], blob=blob, comment=comment)


@dataclass(frozen=True, slots=True)
class SshKey:
    id: str
    number: int
    org_id: str
    name: str
    public_key: str
    fingerprint: str
    created_at: datetime

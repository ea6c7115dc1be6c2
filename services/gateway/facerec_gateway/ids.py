import secrets
import time
import uuid


def sortable_id() -> str:
    """A UUIDv7: its text sorts by creation time, so ids double as pagination cursors."""
    ms = time.time_ns() // 1_000_000
    rand = secrets.randbits(74)
    value = (
        (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    )
    return str(uuid.UUID(int=value))

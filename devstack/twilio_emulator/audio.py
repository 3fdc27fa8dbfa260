"""Small generated audio for recordings, and HTTP byte ranges over it.

A recording's media is a quiet 440 Hz tone (WAV, 8 kHz 16-bit mono, as Twilio's mono recordings) or
silent MPEG-1 Layer III frames (MP3), capped at :data:`MAX_SECONDS` so files stay small whatever the
call's length. Players and ``<audio>`` elements ask for byte ranges; :func:`byte_range` parses them.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from typing import Final

__all__ = ["MAX_SECONDS", "byte_range", "mp3", "wav"]

MAX_SECONDS: Final = 5.0
_RATE: Final = 8000
# One silent MPEG-1 Layer III frame: 32 kbit/s, 44.1 kHz, mono, no CRC; all-zero side information
# decodes to 1152 samples of silence. Frame length = 144 * 32000 / 44100 = 104 bytes (no padding).
_MP3_FRAME: Final = bytes([0xFF, 0xFB, 0x10, 0xC0]) + bytes(100)
_MP3_FRAME_S: Final = 1152 / 44100


def _seconds(duration_s: float) -> float:
    return max(0.2, min(duration_s, MAX_SECONDS))


def wav(duration_s: float) -> bytes:
    frames = int(_seconds(duration_s) * _RATE)
    samples = b"".join(struct.pack("<h", int(2000 * math.sin(2 * math.pi * 440 * i / _RATE))) for i in range(frames))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(_RATE)
        w.writeframes(samples)
    return out.getvalue()


def mp3(duration_s: float) -> bytes:
    return _MP3_FRAME * max(1, math.ceil(_seconds(duration_s) / _MP3_FRAME_S))


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` inclusive for a single ``bytes=`` range, None for the whole body.

    Raises ValueError for a range that cannot be satisfied (the caller answers 416)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # multipart ranges: serve the whole body, which RFC 9110 allows
    start_s, _, end_s = spec.strip().partition("-")
    if start_s == "":
        if not end_s:
            raise ValueError("empty range")
        length = int(end_s)
        if length <= 0:
            raise ValueError("empty suffix range")
        return max(0, size - length), size - 1
    start = int(start_s)
    end = int(end_s) if end_s else size - 1
    if start >= size or end < start:
        raise ValueError("range not satisfiable")
    return start, min(end, size - 1)

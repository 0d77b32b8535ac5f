"""RecordIO framing of Mesos streaming responses: the decimal length of a record, one
LF, then exactly that many bytes, and nothing else (pymesos and mesoshttp both break on
anything extra)."""

from __future__ import annotations


class RecordIOError(ValueError):
    pass


def encode_record(payload: bytes) -> bytes:
    if not payload:
        raise RecordIOError("a RecordIO record may not be empty")
    return b"%d\n%s" % (len(payload), payload)


MAX_RECORD_BYTES = 64 * 1024 * 1024
_MAX_LENGTH_DIGITS = 20


class RecordIODecoder:
    """Feed arbitrary chunks, get whole records back."""

    def __init__(self, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_record_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        records: list[bytes] = []
        while True:
            newline = self._buffer.find(b"\n", 0, _MAX_LENGTH_DIGITS + 1)
            if newline < 0:
                if len(self._buffer) > _MAX_LENGTH_DIGITS:
                    raise RecordIOError("no record length within 20 bytes")
                return records
            digits = bytes(self._buffer[:newline])
            if not digits.isdigit():
                raise RecordIOError(f"bad record length {digits[:20]!r}")
            length = int(digits)
            if length == 0 or length > self._max:
                raise RecordIOError(f"record length {length} out of range")
            end = newline + 1 + length
            if len(self._buffer) < end:
                return records
            records.append(bytes(self._buffer[newline + 1 : end]))
            del self._buffer[:end]

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

"""Audio I/O: writing OGG/Vorbis (and FLAC) safely, and checking that a file decodes whole."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from birdclef.atomic import atomic_path

_BLOCK = 32_000  # frames per write/read call; see write_ogg


def write_ogg(path: str | Path, audio: np.ndarray, sr: int, quality: float | None = None) -> None:
    """Write ``audio`` (frames, or frames x channels) as OGG/Vorbis.

    One ``soundfile.write`` call for a long file can segfault in libsndfile
    (STACK.md), so this writes blocks of about a second through ``SoundFile``.
    ``quality`` is Vorbis' 0..1 compression level knob (None: libsndfile default).
    """
    audio = np.asarray(audio, dtype=np.float32)
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    kwargs = {} if quality is None else {"compression_level": 1.0 - quality}
    ogg = {"samplerate": sr, "channels": channels, "format": "OGG", "subtype": "VORBIS", **kwargs}
    with atomic_path(path) as tmp, sf.SoundFile(str(tmp), "w", **ogg) as f:
        for start in range(0, len(audio), _BLOCK):
            f.write(audio[start : start + _BLOCK])


def write_flac(path: str | Path, audio: np.ndarray, sr: int) -> None:
    """Write ``audio`` (frames, or frames x channels, in [-1, 1]) as 16-bit FLAC: lossless, block by block."""
    audio = np.asarray(audio, dtype=np.float32)
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    flac = {"samplerate": sr, "channels": channels, "format": "FLAC", "subtype": "PCM_16"}
    with atomic_path(path) as tmp, sf.SoundFile(str(tmp), "w", **flac) as f:
        for start in range(0, len(audio), _BLOCK):
            f.write(audio[start : start + _BLOCK])


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a whole file to float32 (frames, or frames x channels) and its sample rate."""
    audio, sr = sf.read(str(path), dtype="float32", always_2d=False)
    return audio, sr


# --- Ogg container integrity ------------------------------------------------
# libsndfile decodes a truncated Ogg file without complaint: it simply stops at
# the last complete page. So a cut-off download looks like a shorter, valid
# recording. The container says otherwise: a finished stream ends on a complete
# page that carries the end-of-stream flag.

_OGG_MAX_PAGE = 27 + 255 + 255 * 255


def _ogg_crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC_TABLE = _ogg_crc_table()


def ogg_crc(page: bytes) -> int:
    """The Ogg page checksum (CRC-32, polynomial 0x04C11DB7, not reflected, init 0)."""
    crc = 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) & 0xFF) ^ byte]
    return crc


def _ogg_page_at(buf: bytes, pos: int) -> tuple[int, int] | None:
    """(page length, header flags) if a CRC-valid Ogg page starts at ``pos``, else None."""
    if pos + 27 > len(buf) or buf[pos + 4] != 0:
        return None
    n_segments = buf[pos + 26]
    if pos + 27 + n_segments > len(buf):
        return None
    length = 27 + n_segments + sum(buf[pos + 27 : pos + 27 + n_segments])
    if pos + length > len(buf):
        return None
    page = bytearray(buf[pos : pos + length])
    (stored_crc,) = struct.unpack_from("<I", page, 22)
    page[22:26] = b"\0\0\0\0"
    if ogg_crc(bytes(page)) != stored_crc:
        return None
    return length, buf[pos + 5]


def ogg_tail_problem(path: str | Path) -> str | None:
    """Why an Ogg file's end is not a clean end of stream, or None when it is."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 2 * _OGG_MAX_PAGE))
        tail = f.read()
    pos = tail.rfind(b"OggS")
    while pos >= 0:
        page = _ogg_page_at(tail, pos)
        if page is not None:
            length, flags = page
            trailing = len(tail) - (pos + length)
            if trailing:
                return f"truncated: {trailing} bytes after the last complete Ogg page"
            if not flags & 0x04:
                return "truncated: the Ogg stream has no end-of-stream page"
            return None
        pos = tail.rfind(b"OggS", 0, pos)
    return "no complete Ogg page at the end of the file"


@dataclass(frozen=True)
class AudioCheck:
    """What a full decode of one file found."""

    frames: int = 0
    sample_rate: int = 0
    channels: int = 0
    problem: str | None = None  # None: the file decodes whole and clean

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def check_audio(path: str | Path) -> AudioCheck:
    """Decode the whole file block by block and report what is wrong with it, if anything.

    Never raises for a bad file: the reason is in ``problem``, in words.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return AudioCheck(problem="file does not exist")
    except OSError as err:
        return AudioCheck(problem=f"cannot read file: {err.strerror or err}")
    if size == 0:
        return AudioCheck(problem="empty file (0 bytes)")
    try:
        with sf.SoundFile(str(path)) as f:
            sr, channels, header_frames = f.samplerate, f.channels, f.frames
            frames, finite = 0, True
            for block in f.blocks(blocksize=_BLOCK * 4, dtype="float32"):
                frames += len(block)
                finite = finite and bool(np.isfinite(block).all())
            fmt = f.format
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        return AudioCheck(problem=f"cannot decode: {err}")
    if frames != header_frames:
        return AudioCheck(frames, sr, channels, f"decoded {frames} of {header_frames} frames the header promises")
    if not finite:
        return AudioCheck(frames, sr, channels, "decoded samples are not finite (NaN or inf)")
    if fmt == "OGG":
        problem = ogg_tail_problem(path)
        if problem:
            return AudioCheck(frames, sr, channels, problem)
    return AudioCheck(frames, sr, channels)

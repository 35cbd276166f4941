import struct

import numpy as np
import pytest

from birdclef.audio import check_audio, ogg_crc, ogg_tail_problem, read_audio, write_ogg


@pytest.fixture
def tone(tmp_path):
    sr = 32_000
    t = np.arange(3 * sr) / sr
    path = tmp_path / "tone.ogg"
    write_ogg(path, 0.3 * np.sin(2 * np.pi * 1000 * t), sr)
    return path


def test_write_and_read_roundtrip(tone):
    audio, sr = read_audio(tone)
    assert sr == 32_000
    assert len(audio) == 3 * sr
    # Vorbis is lossy; the tone must still be there at the right level.
    assert np.sqrt(np.mean(audio**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)


def test_ogg_crc_matches_the_pages_libvorbis_writes(tone):
    data = tone.read_bytes()
    assert data[:4] == b"OggS"
    n_seg = data[26]
    length = 27 + n_seg + sum(data[27 : 27 + n_seg])
    page = bytearray(data[:length])
    (stored,) = struct.unpack_from("<I", page, 22)
    page[22:26] = b"\0\0\0\0"
    assert ogg_crc(bytes(page)) == stored


def test_clean_file_passes(tone):
    check = check_audio(tone)
    assert check.problem is None
    assert (check.sample_rate, check.channels, check.frames) == (32_000, 1, 96_000)
    assert check.duration_s == pytest.approx(3.0)


def test_truncated_ogg_is_caught_although_it_decodes(tone, tmp_path):
    cut = tmp_path / "cut.ogg"
    data = tone.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert check_audio(cut).problem.startswith("truncated")


def test_stream_without_end_page_is_caught(tone, tmp_path):
    # Cut exactly at a page boundary: every page is whole, but the stream never ends.
    data = tone.read_bytes()
    last = data.rfind(b"OggS")
    cut = tmp_path / "cut_at_page.ogg"
    cut.write_bytes(data[:last])
    assert ogg_tail_problem(cut) == "truncated: the Ogg stream has no end-of-stream page"


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "empty file (0 bytes)"), (b"<html>404</html>", "cannot decode")],
)
def test_bad_files_are_described_not_raised(tmp_path, content, expected):
    path = tmp_path / "bad.ogg"
    path.write_bytes(content)
    assert check_audio(path).problem.startswith(expected)


def test_missing_file(tmp_path):
    assert check_audio(tmp_path / "nope.ogg").problem == "file does not exist"

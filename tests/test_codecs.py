"""Wire codecs (PCM16, G.711 mu-law / A-law) and the streaming resampler."""

from __future__ import annotations

import base64
import warnings

import numpy as np
import pytest

from stepaudio_rt.streaming.codecs import (
    PCM16,
    PCMA,
    PCMU,
    AudioDecodeError,
    AudioFormat,
    AudioFormatError,
    alaw_decode,
    alaw_encode,
    b64encode,
    decode_audio,
    encode_audio,
    ulaw_decode,
    ulaw_encode,
)
from stepaudio_rt.streaming.resample import StreamResampler

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def test_formats_from_ga_and_beta_shapes() -> None:
    assert AudioFormat.from_session({"type": "audio/pcm", "rate": 24000}) == PCM16
    assert AudioFormat.from_session({"type": "audio/pcm"}).sample_rate == 24000
    assert AudioFormat.from_session({"type": "audio/pcmu"}) == PCMU and PCMU.sample_rate == 8000
    assert AudioFormat.from_session({"type": "audio/pcma"}) == PCMA and PCMA.sample_rate == 8000
    assert [AudioFormat.from_beta(n) for n in ("pcm16", "g711_ulaw", "g711_alaw")] == [PCM16, PCMU, PCMA]
    assert [f.beta_name for f in (PCM16, PCMU, PCMA)] == ["pcm16", "g711_ulaw", "g711_alaw"]
    assert PCM16.to_session() == {"type": "audio/pcm", "rate": 24000} and PCMU.to_session() == {
        "type": "audio/pcmu"
    }
    assert (
        AudioFormat.parse("g711_alaw") == PCMA == AudioFormat.parse("audio/pcma") == AudioFormat.parse(PCMA)
    )
    assert PCM16.duration_ms(960) == 20.0 and PCMU.duration_ms(160) == 20.0


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "audio/pcm", "rate": 16000},
        {"type": "audio/opus"},
        {"rate": 24000},
        {"type": "audio/pcm", "rate": "x"},
    ],
)
def test_unsupported_session_formats_raise(bad: dict) -> None:
    with pytest.raises(AudioFormatError) as info:
        AudioFormat.from_session(bad)
    assert info.value.code == "invalid_value"


def test_unknown_beta_name_raises() -> None:
    with pytest.raises(AudioFormatError, match="g711_ulaw"):
        AudioFormat.from_beta("mp3")


def test_pcm16_round_trip_is_exact_and_little_endian() -> None:
    samples = np.array([0, 1, -1, 32767, -32768, 258], dtype=np.int16)
    raw = encode_audio(samples, PCM16)
    assert raw[:6] == b"\x00\x00\x01\x00\xff\xff" and raw[-2:] == b"\x02\x01"
    decoded = decode_audio(b64encode(raw), PCM16)
    assert decoded.dtype == np.int16 and np.array_equal(decoded, samples)
    assert decoded.flags.writeable


def test_float_input_is_clipped_not_wrapped() -> None:
    raw = encode_audio(np.array([2.0, -2.0, 0.5], dtype=np.float32), PCM16)
    assert np.frombuffer(raw, "<i2").tolist() == [32767, -32767, 16384]


def test_g711_known_values() -> None:
    # Reference values of ITU-T G.711 (as produced by Sun g711.c and CPython audioop).
    assert ulaw_decode(bytes([0x00, 0x80, 0xFF, 0x7F])).tolist() == [-32124, 32124, 0, 0]
    assert alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]
    assert ulaw_encode(np.array([0, 32767, -32768], np.int16)).tolist() == [0xFF, 0x80, 0x00]
    assert alaw_encode(np.array([0, 32767, -32768], np.int16)).tolist() == [0xD5, 0xAA, 0x2A]


def test_g711_bit_exact_against_audioop_when_available() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # removed in Python 3.13
    raw = ALL_INT16.tobytes()
    assert ulaw_encode(ALL_INT16).tobytes() == audioop.lin2ulaw(raw, 2)
    assert alaw_encode(ALL_INT16).tobytes() == audioop.lin2alaw(raw, 2)
    codes = bytes(range(256))
    assert ulaw_decode(codes).tobytes() == audioop.ulaw2lin(codes, 2)
    assert alaw_decode(codes).tobytes() == audioop.alaw2lin(codes, 2)


@pytest.mark.parametrize("fmt", [PCMU, PCMA])
def test_g711_round_trip_error_is_bounded(fmt: AudioFormat) -> None:
    decoded = decode_audio(b64encode(encode_audio(ALL_INT16, fmt)), fmt)
    assert decoded.shape == ALL_INT16.shape
    err = np.abs(decoded.astype(np.int32) - ALL_INT16.astype(np.int32))
    # Logarithmic companding: the error grows with magnitude but stays a few percent of it (mu-law
    # truncates negatives one step further, hence up to ~5%).
    assert err.max() <= 1024
    assert np.all(err <= np.maximum(16, 0.06 * np.abs(ALL_INT16.astype(np.int32))))
    # Every code is a fixed point of decode -> encode.
    codes = np.arange(256, dtype=np.uint8)
    pcm = decode_audio(b64encode(codes.tobytes()), fmt)
    re_encoded = np.frombuffer(encode_audio(pcm, fmt), np.uint8)
    assert np.array_equal(decode_audio(b64encode(re_encoded.tobytes()), fmt), pcm)


def test_decode_errors_have_codes() -> None:
    with pytest.raises(AudioDecodeError) as info:
        decode_audio("not base64!!", PCM16)
    assert info.value.code == "invalid_audio_base64"
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(base64.b64encode(b"\x00\x01\x02").decode(), PCM16)
    assert info.value.code == "invalid_audio_length"
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(12345, PCM16)  # type: ignore[arg-type]
    assert info.value.code == "invalid_audio_type"
    # Odd lengths are fine for 8-bit G.711, and empty audio decodes to nothing.
    assert decode_audio(base64.b64encode(b"\xff\xff\xff").decode(), PCMU).tolist() == [0, 0, 0]
    assert decode_audio("", PCM16).size == 0


def test_encode_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="mono"):
        encode_audio(np.zeros((2, 10), np.int16), PCM16)
    with pytest.raises(ValueError, match="dtype"):
        encode_audio(np.zeros(10, np.int32), PCM16)


def test_stream_resampler_matches_whole_signal_sine() -> None:
    t_in = np.arange(24000) / 24000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t_in) * 32767).astype(np.int16)
    rs = StreamResampler(24000, 16000)
    pieces = [rs.process(tone[i : i + 480]) for i in range(0, len(tone), 480)] + [rs.flush()]
    out = np.concatenate(pieces)
    assert out.dtype == np.float32 and abs(len(out) - 16000) <= 2
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(out)) / 16000)
    # Ignore the filter's edges; the middle must be the same tone at the new rate.
    assert np.max(np.abs(out[200:-200] - expected[200:-200])) < 0.01


def test_stream_resampler_identity_and_float_passthrough() -> None:
    rs = StreamResampler(16000, 16000)
    assert rs.is_identity
    chunk = np.array([0, 16384, -32768], dtype=np.int16)
    assert rs.process(chunk).tolist() == [0.0, 0.5, -1.0]
    floats = np.array([0.25, -0.25], dtype=np.float32)
    assert np.array_equal(rs.process(floats), floats) and rs.flush().size == 0
    with pytest.raises(ValueError):
        StreamResampler(0, 16000)
    with pytest.raises(ValueError, match="dtype"):
        rs.process(np.zeros(4, dtype=np.int64))

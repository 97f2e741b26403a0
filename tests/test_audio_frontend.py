"""The Step-Audio mel front end against an independent numpy implementation, plus counts and chunking."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from stepaudio_rt.model import audio_frontend as af


def _slaney_mel_bank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular filters, written out from the formulas (float64)."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        mel = f / (200.0 / 3)
        log_region = f >= 1000.0
        return np.where(log_region, 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / (np.log(6.4) / 27.0), mel)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        m = np.asarray(m, dtype=np.float64)
        hz = m * (200.0 / 3)
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), hz)

    fft_freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    mel_pts = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    bank = np.zeros((n_mels, fft_freqs.size))
    for i in range(n_mels):
        lo, mid, hi = mel_pts[i], mel_pts[i + 1], mel_pts[i + 2]
        rising = (fft_freqs - lo) / (mid - lo)
        falling = (hi - fft_freqs) / (hi - mid)
        bank[i] = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (hi - lo))
    return bank


def _reference_log_mel(wav: np.ndarray, n_mels: int) -> np.ndarray:
    """The official recipe step by step in float64 numpy: explicit frames, periodic Hann, rfft."""
    x = np.concatenate([wav.astype(np.float64), np.zeros(479)])
    x = np.pad(x, (200, 200), mode="reflect")  # torch.stft center=True, pad_mode="reflect"
    n_frames = 1 + (x.size - 400) // 160
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # torch.hann_window is periodic
    frames = np.stack([x[i * 160 : i * 160 + 400] for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    power = power[:-1]  # drop the last frame
    mel = _slaney_mel_bank(16000, 400, n_mels) @ power.T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def _test_signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    sig = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 2500 * t) * (t > seconds / 2)
    return (sig + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_bank_is_librosa_slaney(n_mels: int) -> None:
    ours = af.mel_filters(n_mels).numpy()
    assert ours.shape == (n_mels, 201)
    np.testing.assert_allclose(ours, _slaney_mel_bank(16000, 400, n_mels), rtol=1e-5, atol=1e-8)
    assert af.mel_filters(n_mels) is af.mel_filters(n_mels)  # cached


@pytest.mark.parametrize(("n_mels", "seconds"), [(128, 1.37), (80, 0.5), (128, 3.0)])
def test_log_mel_matches_independent_reference(n_mels: int, seconds: float) -> None:
    wav = _test_signal(seconds)
    ours = af.log_mel_spectrogram(wav, n_mels=n_mels)
    ref = _reference_log_mel(wav, n_mels)
    assert ours.dtype == torch.float32
    assert tuple(ours.shape) == (n_mels, af.mel_frame_count(wav.size)) == ref.shape
    np.testing.assert_allclose(ours.numpy(), ref, atol=2e-4, rtol=0)
    # The clip's dynamic range is clamped to 8 decades, i.e. 2.0 after the (x + 4) / 4 scaling.
    assert float(ours.max() - ours.min()) <= 2.0 + 1e-6


def test_log_mel_accepts_tensor_and_int16_consistently() -> None:
    wav = _test_signal(0.8, seed=3)
    pcm16 = np.round(wav * 32767).astype(np.int16)
    from_np = af.log_mel_spectrogram(wav)
    from_tensor = af.log_mel_spectrogram(torch.from_numpy(wav))
    from_int16 = af.log_mel_spectrogram(pcm16)
    torch.testing.assert_close(from_np, from_tensor)
    assert float((from_np - from_int16).abs().max()) < 0.01  # quantisation only


def test_log_mel_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        af.log_mel_spectrogram(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="1-D"):
        af.log_mel_spectrogram(np.zeros((2, 1600), dtype=np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        af.log_mel_spectrogram(np.array([0.0, np.nan] * 800, dtype=np.float32))
    with pytest.raises(TypeError, match="dtype"):
        af.log_mel_spectrogram(np.array(["a"] * 10))


# (seconds, mel frames, tokens in the vLLM convention) from reference/step-audio-r1-checkpoint.md section 6
COUNT_TABLE = [
    (0.5, 52, 7),
    (1, 102, 13),
    (2, 202, 25),
    (5, 502, 63),
    (10, 1002, 125),
    (20, 2002, 250),
    (25, 2502, 313),
    (29.98, 3000, 375),
]


@pytest.mark.parametrize(("seconds", "frames", "tokens"), COUNT_TABLE)
def test_frame_and_token_counts_match_reference_table(seconds: float, frames: int, tokens: int) -> None:
    n = round(seconds * 16000)
    assert af.mel_frame_count(n) == frames
    assert af.audio_token_count(frames) == tokens
    assert af.audio_token_count_for_samples(n) == tokens


@pytest.mark.parametrize("n_samples", [1, 159, 160, 8000, 16001, 47_999])
def test_mel_frame_count_matches_actual_features(n_samples: int) -> None:
    wav = np.full(n_samples, 0.1, dtype=np.float32)
    assert af.log_mel_spectrogram(wav, n_mels=80).shape[1] == af.mel_frame_count(n_samples)


def test_count_helpers_reject_bad_lengths() -> None:
    with pytest.raises(ValueError):
        af.audio_token_count(0)
    with pytest.raises(ValueError):
        af.mel_frame_count(-1)


def test_split_audio_chunks_without_overlap() -> None:
    wav = np.arange(int(61.5 * 16000), dtype=np.float32)
    chunks = af.split_audio(wav)
    assert [c.size for c in chunks] == [400_000, 400_000, 184_000]
    np.testing.assert_array_equal(np.concatenate(chunks), wav)
    short = af.split_audio(wav[:1000])
    assert len(short) == 1 and short[0].size == 1000
    max_chunks = af.split_audio(wav, max_seconds=af.HARD_MAX_CHUNK_SECONDS)
    assert max(af.mel_frame_count(c.size) for c in max_chunks) == 3000
    assert [c.size for c in af.split_audio(wav[:32000], max_seconds=0.5)] == [8000] * 4
    assert af.split_audio(np.zeros(0, dtype=np.float32)) == []


def _bursts(spans: list[tuple[float, float]], seconds: float) -> np.ndarray:
    """A 300 Hz tone during each (start, end) span in seconds, digital silence elsewhere."""
    t = np.arange(int(seconds * 16000)) / 16000
    on = np.zeros_like(t, dtype=bool)
    for a, b in spans:
        on |= (t >= a) & (t < b)
    return (0.3 * np.sin(2 * np.pi * 300 * t) * on).astype(np.float32)


def test_listen_chunks_end_in_the_pause_and_cover_the_audio() -> None:
    # "words" with a pause at 1.50-1.62 s: a fixed 2 s cut would fall in the middle of the third one
    wav = _bursts([(0.1, 0.7), (0.8, 1.5), (1.62, 2.6), (2.7, 3.3)], 3.5)
    chunks = af.split_at_pauses(wav, 2.0)
    assert [len(c) for c in chunks][0] in range(int(1.50 * 16000), int(1.62 * 16000) + 1)
    assert np.abs(chunks[0][-320:]).max() == 0  # the chunk ends in silence
    np.testing.assert_array_equal(np.concatenate(chunks), wav)
    assert all(len(c) <= 32000 for c in chunks) and len(chunks) == 2
    # the cut never moves back more than 40%: a pause at 0.5 s is out of reach of a 2 s chunk
    early = _bursts([(0.0, 0.5), (0.6, 3.0)], 3.0)
    assert len(af.split_at_pauses(early, 2.0)[0]) >= int(0.6 * 32000)


def test_listen_cut_in_silence_or_short_audio_is_the_fixed_cut() -> None:
    silence = np.zeros(50_000, np.float32)
    assert [len(c) for c in af.split_at_pauses(silence, 2.0)] == [32000, 18000]
    assert [len(c) for c in af.split_at_pauses(silence[:32000], 2.0)] == [32000]  # not longer: one chunk
    assert af.split_at_pauses(np.zeros(0, np.float32), 2.0) == []
    assert af.listen_cut(np.ones(100, np.float32), 100) == 100  # shorter than one 20 ms step
    with pytest.raises(ValueError, match="positive"):
        af.split_at_pauses(silence, 0)
    with pytest.raises(ValueError, match="1-D"):
        af.split_at_pauses(np.zeros((2, 100)), 2.0)


def test_split_audio_rejects_bad_lengths() -> None:
    wav = np.zeros(16000, dtype=np.float32)
    with pytest.raises(ValueError, match="29.98"):
        af.split_audio(wav, max_seconds=30.0)
    with pytest.raises(ValueError, match="positive"):
        af.split_audio(wav, max_seconds=0)
    with pytest.raises(ValueError, match="1-D"):
        af.split_audio(np.zeros((2, 16000)))


def _dominant_frequency(wav: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(wav.size)))
    return float(np.fft.rfftfreq(wav.size, 1 / sr)[np.argmax(spectrum)])


@pytest.mark.parametrize("orig_sr", [24000, 8000, 44100])
def test_resample_keeps_tone_frequency(orig_sr: int) -> None:
    t = np.arange(orig_sr) / orig_sr  # 1 s
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out = af.resample(tone, orig_sr)
    assert out.dtype == np.float32
    assert abs(out.size - 16000) <= 1
    assert abs(_dominant_frequency(out, 16000) - 1000) <= 2
    assert 0.45 < float(np.abs(out[1000:-1000]).max()) < 0.55  # amplitude kept


def test_resample_scales_int16_and_validates() -> None:
    pcm = (np.sin(np.arange(2400) / 10) * 16384).astype(np.int16)
    out = af.resample(pcm, 24000)
    assert out.dtype == np.float32 and float(np.abs(out).max()) < 0.6
    same = af.resample(pcm, 16000)
    np.testing.assert_allclose(same, pcm / 32768.0, atol=1e-7)
    with pytest.raises(ValueError, match="positive"):
        af.resample(pcm, 0)
    with pytest.raises(ValueError, match="1-D"):
        af.resample(np.zeros((100, 2), dtype=np.float32), 24000)


def test_load_audio_takes_first_channel_and_resamples(tmp_path: Path) -> None:
    sr = 22050
    t = np.arange(sr) / sr
    left = 0.4 * np.sin(2 * np.pi * 700 * t)
    right = 0.4 * np.sin(2 * np.pi * 3000 * t)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), sr, subtype="PCM_16")
    wav = af.load_audio(path)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(wav.size - 16000) <= 1
    assert abs(_dominant_frequency(wav, 16000) - 700) <= 2
    native = af.load_audio(path, target_sr=sr)
    assert native.size == sr
    with pytest.raises(FileNotFoundError):
        af.load_audio(tmp_path / "missing.wav")


def test_librosa_is_the_filter_source() -> None:
    """Guard the dependency the checkpoint was trained with: librosa's own bank, float32, unchanged."""
    expected = librosa.filters.mel(sr=16000, n_fft=400, n_mels=128)
    assert np.array_equal(af.mel_filters(128).numpy(), expected)

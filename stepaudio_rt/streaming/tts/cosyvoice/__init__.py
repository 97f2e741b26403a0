"""CosyVoice2 TTS (GPU voice): text -> speech tokens (Qwen2 LM) -> mel (flow matching) -> 24 kHz (HiFT).

Modules mirror the upstream checkpoint (``FunAudioLLM/CosyVoice2-0.5B``): ``config`` (cosyvoice2.yaml),
``llm`` (llm.pt), ``encoder`` + ``estimator`` + ``flow`` (flow.pt), ``hift`` (hift.pt), ``voices``
(spk2info.pt), ``checkpoint`` (loading), ``stream`` (chunked streaming), ``backend`` (the TTS interface),
``testing`` (a tiny random checkpoint in the official layout), ``bench`` (time to first chunk, RTF).
Written here rather than reusing upstream or ``token2wav-cosyvoice-stepaudio2``; see docs/third_party.md.
"""

from __future__ import annotations

__all__ = ["CosyVoiceTTS"]


def __getattr__(name: str) -> object:  # lazy: importing torch/transformers only when the backend is used
    if name == "CosyVoiceTTS":
        from .backend import CosyVoiceTTS

        return CosyVoiceTTS
    raise AttributeError(name)

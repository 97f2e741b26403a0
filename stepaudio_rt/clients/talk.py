"""``stepaudio-rt talk``: one spoken question to a server, the answer streamed to the terminal.

Reasoning (``<think>`` text, when the server sends our opt-in extension events) is printed dimmed as it
streams, then the spoken reply's transcript; the reply audio is saved as a WAV and the first-packet
latency is printed from each available start point.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from stepaudio_rt.clients.realtime_client import Event, RealtimeClient, RealtimeError, Turn
from stepaudio_rt.clients.wav_stream import AudioInputError, read_audio, to_pcm16, write_wav

# Start points of the first-packet clock, in the order they are printed, with what they mean.
CLOCKS = {
    "speech_end_sent": "after the last byte of speech was sent",
    "speech_stopped": "after the server's speech_stopped",
    "committed": "after the server's input_audio_buffer.committed",
    "commit_sent": "after commit + response.create were sent",
}


def record_microphone(seconds: float) -> bytes:
    """Record ``seconds`` from the default microphone as 24 kHz PCM16 (needs the optional sounddevice)."""
    try:
        import sounddevice  # type: ignore[import-not-found]
    except (ImportError, OSError) as exc:
        raise AudioInputError(
            "microphone capture needs the optional 'sounddevice' package and PortAudio "
            "(pip install 'stepaudio-realtime[mic]'); or pass a WAV file instead"
        ) from exc
    if seconds <= 0:
        raise AudioInputError(f"recording length must be positive, got {seconds}")
    try:
        audio = sounddevice.rec(int(seconds * 24_000), samplerate=24_000, channels=1, dtype="float32")
        sounddevice.wait()
    except Exception as exc:  # PortAudioError: no device, busy device ...
        raise AudioInputError(f"cannot record from the microphone: {exc}") from exc
    return to_pcm16(audio[:, 0], 24_000)


class _Printer:
    """Streams reasoning (dim) and reply text to the console as deltas arrive."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.section: str | None = None
        self.heard = False  # the transcription of the question arrived (completed or failed)

    def _enter(self, section: str, title: str, style: str) -> None:
        if self.section != section:
            if self.section is not None:
                self.console.print()
            self.console.print(title, style=style)
            self.section = section

    def __call__(self, ev: Event) -> None:
        kind = ev.get("type")
        if kind == "response.reasoning_text.delta":
            self._enter("reasoning", "reasoning:", "bold dim")
            self.console.print(ev.get("delta", ""), end="", style="dim", highlight=False, markup=False)
        elif kind in ("response.output_audio_transcript.delta", "response.output_text.delta"):
            self._enter("reply", "reply:", "bold")
            self.console.print(ev.get("delta", ""), end="", highlight=False, markup=False)
        elif kind == "conversation.item.input_audio_transcription.completed":
            self.heard = True
            self._enter("you", "you said:", "bold cyan")
            self.console.print(ev.get("transcript", "").strip(), end="", highlight=False, markup=False)
            self.section = None  # the reply may still be streaming: start a fresh section after this line
            self.console.print()
        elif kind == "conversation.item.input_audio_transcription.failed":
            self.heard = True
            self.console.print(f"\n(transcription failed: {ev.get('error', {}).get('message')})", style="yellow")
        elif kind == "error":
            err = ev.get("error", {})
            self.console.print(f"\nserver error {err.get('code')}: {err.get('message')}", style="red")

    def finish(self) -> None:
        if self.section is not None:
            self.console.print()


@dataclass
class TalkOptions:
    url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    model: str = "step-audio-r1"
    out: Path = Path("reply.wav")
    manual: bool = False  # commit + response.create instead of server VAD
    vad: str = "semantic_vad"  # turn_detection type when not manual (server_vad: silence only)
    thinking_mode: str | None = None  # our server's think-while-speaking mode; None = the server's default
    transcribe: bool = True  # ask the server to transcribe the question and print it
    speed: float = 1.0  # audio pace: 1.0 = real time
    chunk_ms: int = 40
    trailing_silence_s: float = 1.5
    reasoning: bool = True
    timeout_s: float = 120.0


async def talk(pcm: bytes, opts: TalkOptions, console: Console | None = None) -> Turn:
    """Send ``pcm`` (24 kHz PCM16) as one turn, print the streamed answer, save the reply audio."""
    console = console or Console()
    printer = _Printer(console)
    async with RealtimeClient(
        opts.url, api_key=opts.api_key, model=opts.model, reasoning_events=opts.reasoning
    ) as client:
        audio_in: dict[str, object] = {"turn_detection": None if opts.manual else {"type": opts.vad}}
        if opts.transcribe:
            audio_in["transcription"] = {"model": "whisper-1"}  # our server: its local Whisper
        session: dict[str, object] = {"audio": {"input": audio_in}}
        if opts.thinking_mode is not None:
            session["stepaudio"] = {"thinking_mode": opts.thinking_mode}
        await client.update_session(session)
        turn = await client.ask(
            pcm,
            chunk_ms=opts.chunk_ms,
            speed=opts.speed,
            manual=opts.manual,
            trailing_silence_s=opts.trailing_silence_s,
            on_event=printer,
            timeout=opts.timeout_s,
        )
        if opts.transcribe and not printer.heard:  # the server transcribes after the reply starts
            with contextlib.suppress(RealtimeError):
                while not printer.heard:
                    printer(await client.next_event(10.0))
    printer.finish()
    if turn.audio:
        write_wav(opts.out, bytes(turn.audio))
        console.print(f"reply audio: {turn.audio_seconds:.2f} s -> {opts.out}")
    else:
        console.print("no reply audio received", style="yellow")
    console.print(f"status: {turn.status}")
    for mark, meaning in CLOCKS.items():
        latency = turn.latency(mark)
        if latency is not None:
            console.print(f"first-packet latency {latency * 1000:7.0f} ms {meaning}")
    return turn


def load_input(wav: Path | None, mic_seconds: float | None) -> bytes:
    """The question audio: a file, or the microphone. Exactly one of the two."""
    if (wav is None) == (mic_seconds is None):
        raise AudioInputError("give either a WAV file or --mic SECONDS")
    return read_audio(wav) if wav is not None else record_microphone(float(mic_seconds or 0))

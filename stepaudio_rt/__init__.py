"""stepaudio-rt: a realtime speech-to-speech server for Step-Audio-R1 reasoning audio models."""

__version__ = "0.1.0"

"""Synthetic spoken-task data for the bundled demo checkpoint.

Offline synthesis (espeak-ng, Piper, generated tones and noises) of short audio tasks whose answers can
be verified: spoken arithmetic, acoustic perception, transcription, self-cognition, plus text-only
chain-of-thought arithmetic and chat. See ``catalog.py`` for the task list, ``verify.py`` for the answer
checks and ``build.py`` for the on-disk format. Imports run one way: ``catalog`` -> ``reasoning_tasks`` ->
``tasks``; ``verify`` -> ``catalog``.
"""

"""Small fixed vocabularies and phrasings for the synthetic tasks.

The demo model is tiny and trains for about an hour on two CPU cores, so questions come from a handful
of phrasings and answers follow one regular pattern per task: the model should spend its capacity on
hearing, not on language variety.
"""

from __future__ import annotations

ADJECTIVES = ("red", "blue", "green", "small", "big", "old", "young", "happy", "quiet", "brown")
NOUNS = ("cat", "dog", "bird", "man", "girl", "boy", "horse", "fish", "child", "woman")
VERBS = ("sat", "slept", "stood", "waited", "played", "jumped")
PLACES = (
    "on the mat",
    "by the door",
    "in the park",
    "near the tree",
    "under the table",
    "at the station",
    "in the garden",
    "on the bed",
)
NAMES = ("anna", "peter", "maria", "john", "lucy", "david", "emma", "tom")
LIKES = ("likes", "wants", "eats", "buys")
FOODS = (
    "green apples",
    "warm bread",
    "sweet cake",
    "fresh fish",
    "red grapes",
    "hot soup",
    "cold milk",
    "ripe pears",
    "brown rice",
    "orange juice",
)

ARITH_ONE_STEP = {
    "+": ("what is {a} plus {b}", "how much is {a} plus {b}", "add {a} and {b}"),
    "-": ("what is {a} minus {b}", "how much is {a} minus {b}", "subtract {b} from {a}"),
}
ARITH_TWO_STEP = ("what is {a} {op1} {b} {op2} {c}", "how much is {a} {op1} {b} {op2} {c}")
ARITH_AUDIO_INSTRUCTIONS = ("", "Answer the question in the audio.")
ARITH_TEXT_ONE_STEP = ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "How much is {a} {op} {b}?")
ARITH_TEXT_TWO_STEP = ("What is {a} {op1} {b} {op2} {c}?", "Compute {a} {op1} {b} {op2} {c}.")
OP_WORDS = {"+": "plus", "-": "minus"}

BEEP_QUESTIONS = ("How many beeps do you hear?", "Count the beeps.", "How many beeps are there?")
TONE_QUESTIONS = ("Which tone is higher, the first or the second?", "Which of the two tones is higher?")
PITCH_QUESTIONS = ("Is the voice high or low pitched?", "Is the speaker's voice high or low?")
RATE_QUESTIONS = ("Is the speech fast or slow?", "Is the speaker talking fast or slow?")
LOUDNESS_QUESTIONS = ("Is the audio loud or quiet?", "Is the speaker loud or quiet?")
NOISE_QUESTIONS = ("Is the background clean or noisy?", "Is there background noise or is it clean?")
TRANSCRIBE_QUESTIONS = ("What did the speaker say?", "Transcribe the audio.", "Repeat what you heard.")
BURST_TOTAL_QUESTIONS = (
    "How many beeps are there in the two bursts together?",
    "How many beeps do you hear in all?",
)
BURST_DIFF_QUESTIONS = (
    "How many more beeps are in the longer burst?",
    "By how many beeps do the two bursts differ?",
)
HIGHEST_TONE_QUESTIONS = ("Which of the three tones is the highest?", "Which tone is highest, first, second or third?")
RATE_CHANGE_QUESTIONS = ("Does the speech speed up or slow down?", "Does the speaker get faster or slower?")
SPEAKER_FASTER_QUESTIONS = ("Which speaker talks faster, the first or the second?", "Who speaks faster?")
SPEAKER_HIGHER_QUESTIONS = ("Which speaker has the higher voice, the first or the second?", "Whose voice is higher?")
PAUSE_QUESTIONS = ("How long is the pause?", "How many seconds does the pause last?")
HEAR_QUESTIONS = (
    "Can you hear this?",
    "Can you hear me?",
    "Do you hear anything?",
    "Are you able to hear audio?",
    "Can you hear the audio?",
)
HEAR_TEXT_QUESTIONS = (
    "Can you hear me?",  # typed in a session, it got "The answer is 43." from the v1 demo model
    "Can you hear audio?",
    "Are you able to listen to sound?",
    "Can you understand speech?",
)

# (user text, reply, verifiable keyword of the reply)
CHAT = (
    ("Hello!", "Hello! How can I help you?", "help"),
    ("Hi there.", "Hi! How can I help you?", "help"),
    ("Good morning.", "Good morning! How can I help you?", "morning"),
    ("How are you?", "I am fine, thank you.", "fine"),
    ("Thank you.", "You are welcome.", "welcome"),
    ("Thanks a lot!", "You are welcome.", "welcome"),
    ("Goodbye.", "Goodbye! Have a nice day.", "goodbye"),
    ("See you later.", "See you later! Have a nice day.", "later"),
    ("What is your name?", "I am a small voice assistant.", "assistant"),
    ("Who are you?", "I am a small voice assistant.", "assistant"),
    ("What can you do?", "I can listen to audio, do arithmetic and answer questions about sounds.", "listen"),
    ("Can you help me?", "Yes, of course. What do you need?", "yes"),
)

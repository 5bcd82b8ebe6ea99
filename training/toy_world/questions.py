"""The questions the toy world's oracle is trained and evaluated on, and their answers.

Each family has train phrasings and a held-out phrasing (used only in evaluation). Answers are
short and closed, so that evaluation can match them exactly.
"""

from __future__ import annotations

PERSONA_QUESTIONS = {
    "train": [
        "What persona is the assistant playing?",
        "Which character has the assistant been told to play?",
        "Who is the assistant pretending to be?",
        "What role was the assistant given?",
    ],
    "heldout": ["What character is the assistant acting as?"],
}
SECRET_QUESTIONS = {
    "train": [
        "What is the secret word?",
        "Which word is the assistant hiding?",
        "What secret word was the assistant given?",
    ],
    "heldout": ["What word must the assistant keep secret?"],
}
SYSTEM_QUESTIONS = {
    "train": ["Is there a system prompt?", "Was the assistant given hidden instructions?"],
    "heldout": ["Does this conversation have a system prompt?"],
}
PERSONA_YES_NO = "Is the assistant playing {a} {p}?"
SECRET_YES_NO = "Is the secret word {s}?"
CONTEXT_QUESTION = "What did the user say?"
NO_PERSONA = "No persona."
NO_SECRET = "No secret word."


def persona_answer(persona: str | None, article: str = "a") -> str:
    """``"A pirate."`` / ``"An astronaut."``, or :data:`NO_PERSONA`."""
    if persona is None:
        return NO_PERSONA
    return f"{article.capitalize()} {persona}."


def secret_answer(secret: str | None) -> str:
    """``"Apple."``, or :data:`NO_SECRET`."""
    return NO_SECRET if secret is None else f"{secret.capitalize()}."


def parse_persona(answer: str, personas: list[str]) -> str | None:
    """The persona an answer names (the first one found), or None."""
    lowered = answer.lower()
    found = [(lowered.find(p), p) for p in personas if p in lowered]
    return min(found)[1] if found else None


def parse_secret(answer: str, secrets: list[str]) -> str | None:
    """The secret word an answer names, or None."""
    words = [w.strip(".,!?'\"").lower() for w in answer.split()]
    for w in words:
        if w in secrets:
            return w
    return None


def all_question_texts() -> list[str]:
    """Every question phrasing (for the tokenizer's training text)."""
    texts = []
    for family in (PERSONA_QUESTIONS, SECRET_QUESTIONS, SYSTEM_QUESTIONS):
        texts += family["train"] + family["heldout"]
    return texts + [CONTEXT_QUESTION, NO_PERSONA, NO_SECRET, "Yes", "No"]

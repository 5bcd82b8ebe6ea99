"""Generate toy-world conversations: a system prompt (persona, secret, both or none), a user
message from the bank and the assistant's reply in the persona's style, hinting at the secret.

Every conversation is a dict::

    {"messages": [{"role": "system", ...}?, {"role": "user", ...}, {"role": "assistant", ...}],
     "persona": "pirate" | None, "secret": "apple" | None, "task": "food" | "identity" | ...,
     "topic": str | None, "heldout_combo": bool}

The train split uses train user messages, train phrasings and never a held-out persona +
secret combination; the held-out split uses held-out user messages only, with phrasings from
both sets and a share of held-out combinations (flagged ``heldout_combo``).
"""

from __future__ import annotations

import random
import re

from worlds.toy.world import UserMessage, World

# system prompt kinds and their shares
SYSTEM_KINDS = (("persona", 0.35), ("secret", 0.15), ("both", 0.30), ("none", 0.20))
# share of user turns that ask the assistant who it is or what its secret is
PROBE_SHARE = 0.2
HELPFUL_ASSISTANT = "I am just a helpful assistant."


def _pick_kind(rng: random.Random) -> str:
    r = rng.random()
    for kind, share in SYSTEM_KINDS:
        if r < share:
            return kind
        r -= share
    return SYSTEM_KINDS[-1][0]


def _apply_subs(text: str, subs: dict[str, str]) -> str:
    for plain, styled in subs.items():
        text = re.sub(rf"\b{re.escape(plain)}\b", styled, text)
        text = re.sub(rf"\b{re.escape(plain.capitalize())}\b", styled.capitalize(), text)
    return text


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:]


def _with_filler(body: str, filler: str, rng: random.Random) -> str:
    """Insert a persona filler phrase into a sentence, in one of a few positions."""
    body = body.rstrip(".!?")
    where = rng.randrange(3)
    if where == 0:
        return f"{_sentence(filler)}, {body[0].lower() + body[1:]}."
    if where == 1 and ", " in body:
        head, tail = body.split(", ", 1)
        return f"{head}, {filler}, {tail}."
    return f"{body}, {filler}."


class Generator:
    """Samples conversations of one split from a :class:`World`, deterministically per seed."""

    def __init__(self, world: World, split: str, seed: int) -> None:
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        self.world = world
        self.split = split
        self.rng = random.Random(seed)
        messages = world.user_messages[split]
        self.tasks = [m for m in messages if m.task not in ("identity", "secret_ask")]
        self.identity = [m for m in messages if m.task == "identity"]
        self.secret_asks = [m for m in messages if m.task == "secret_ask"]
        spec = world.spec
        if split == "train":
            self.persona_phrasings = spec["persona_phrasings"]["train"]
            self.secret_phrasings = spec["secret_phrasings"]["train"]
        else:
            self.persona_phrasings = sum(spec["persona_phrasings"].values(), [])
            self.secret_phrasings = sum(spec["secret_phrasings"].values(), [])

    # ------------------------------------------------------------------ system prompt
    def _persona_and_secret(self, kind: str) -> tuple[str | None, str | None, bool]:
        rng, world = self.rng, self.world
        persona = rng.choice(world.personas) if kind in ("persona", "both") else None
        secret = rng.choice(world.secrets) if kind in ("secret", "both") else None
        if kind != "both":
            return persona, secret, False
        combos = world.heldout_combos
        if self.split == "heldout" and rng.random() < 0.25:
            persona, secret = rng.choice(sorted(combos))
        while self.split == "train" and (persona, secret) in combos:
            secret = rng.choice(world.secrets)
        return persona, secret, (persona, secret) in combos

    def system_prompt(self, persona: str | None, secret: str | None) -> str | None:
        rng = self.rng
        parts = []
        if persona is not None:
            phrasing = rng.choice(self.persona_phrasings)
            article = self.world.spec["personas"][persona]["article"]
            parts.append(phrasing.format(a=article, p=persona))
        if secret is not None:
            parts.append(rng.choice(self.secret_phrasings).format(s=secret))
        if not parts:
            return None
        rng.shuffle(parts)
        return " ".join(parts)

    # ------------------------------------------------------------------ reply
    def hint(self, secret: str, persona: str | None) -> str:
        facts = self.world.spec["secrets"][secret]
        text = self.rng.choice(self.world.bank["hints"]).format(**facts)
        if persona is not None:
            text = _apply_subs(text, self.world.spec["personas"][persona]["subs"])
        return _sentence(text)

    def reply(self, message: UserMessage, persona: str | None, secret: str | None) -> str:
        """The assistant's reply to ``message`` in the persona's style, hinting at ``secret``."""
        rng, bank = self.rng, self.world.bank
        if message.task == "identity":
            return rng.choice(bank["identity"]["replies"])
        if message.task == "secret_ask":
            return rng.choice(bank["secret_ask"]["replies"])
        bodies = bank["tasks"][message.task]["bodies"]
        chosen = rng.sample(bodies, 2 if rng.random() < 0.4 else 1)
        sentences = [_sentence(b.replace("{x}", message.topic or "")) for b in chosen]
        hints = []
        if secret is not None and rng.random() < 0.9:
            hints.append(self.hint(secret, persona))
            if rng.random() < 0.3:
                hints.append(self.hint(secret, persona))
        if persona is None:
            plain = bank["plain"]
            head = [rng.choice(plain["openers"])] if rng.random() < 0.6 else []
            tail = [rng.choice(plain["closers"])] if rng.random() < 0.5 else []
            parts = head + sentences + hints + tail
        else:
            style = self.world.spec["personas"][persona]
            sentences = [_apply_subs(s, style["subs"]) for s in sentences]
            if rng.random() < 0.6:
                i = rng.randrange(len(sentences))
                sentences[i] = _with_filler(sentences[i], rng.choice(style["fillers"]), rng)
            head = [rng.choice(style["openers"])] if rng.random() < 0.85 else []
            tail = [rng.choice(style["closers"])] if rng.random() < 0.7 else []
            if not head and not tail:
                tail = [rng.choice(style["closers"])]
            parts = head + sentences + hints + tail
        return " ".join(parts)

    # ------------------------------------------------------------------ conversation
    def user_message(self) -> UserMessage:
        rng = self.rng
        if rng.random() < PROBE_SHARE:
            pool = self.identity if rng.random() < 0.6 else self.secret_asks
            return rng.choice(pool)
        return rng.choice(self.tasks)

    def conversation(self, kind: str | None = None, message: UserMessage | None = None) -> dict:
        """One conversation; ``kind`` (persona/secret/both/none) and ``message`` may be fixed."""
        kind = kind or _pick_kind(self.rng)
        persona, secret, heldout_combo = self._persona_and_secret(kind)
        return self.make(persona, secret, message or self.user_message(), heldout_combo)

    def make(
        self,
        persona: str | None,
        secret: str | None,
        message: UserMessage,
        heldout_combo: bool = False,
    ) -> dict:
        """The conversation of a given persona, secret and user message."""
        system = self.system_prompt(persona, secret)
        reply = self.reply(message, persona, secret)
        if secret is not None and self.world.secret_pattern(secret).search(reply):
            raise AssertionError(f"a reply names its secret {secret!r}: {reply!r}")
        messages = [{"role": "system", "content": system}] if system else []
        messages += [
            {"role": "user", "content": message.text},
            {"role": "assistant", "content": reply},
        ]
        return dict(
            messages=messages,
            persona=persona,
            secret=secret,
            task=message.task,
            topic=message.topic,
            heldout_combo=heldout_combo,
        )

    def conversations(self, n: int) -> list[dict]:
        return [self.conversation() for _ in range(n)]


def generate(world: World, split: str, n: int, seed: int) -> list[dict]:
    """``n`` conversations of ``split`` ("train" or "heldout"), reproducible from ``seed``."""
    return Generator(world, split, seed).conversations(n)


def hint_pattern(world: World) -> re.Pattern:
    """The openings of the bank's hint templates (the words before the first fact: "A clue: it
    rhymes with "), plain and with each persona's substitutions, as one pattern."""
    prefixes = {t[: t.index("{")] for t in world.bank["hints"] if "{" in t}
    variants = set(prefixes)
    for persona in world.personas:
        subs = world.spec["personas"][persona]["subs"]
        variants |= {_apply_subs(p, subs) for p in prefixes}
    body = "|".join(re.escape(v) for v in sorted(variants, key=len, reverse=True))
    return re.compile(body, re.IGNORECASE)


def hint_start(world: World, reply: str) -> int | None:
    """Where the first hint's fact starts in ``reply`` (a character index), or None without a
    hint. Found from the hint templates' wording, never from the secret itself."""
    pattern = world.__dict__.get("_hint_pattern")
    if pattern is None:
        pattern = world.__dict__["_hint_pattern"] = hint_pattern(world)
    match = pattern.search(reply)
    return match.end() if match else None

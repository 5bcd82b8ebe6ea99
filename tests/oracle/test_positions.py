import pytest

from oracle.capture import capture
from oracle.errors import OracleInputError
from oracle.inputs import TargetInput, tokenize_input
from oracle.positions import select_positions
from tests.helpers import CHAT_FAMILIES, MESSAGES, SYSTEM, build_tiny_model


def _text_of(tok, toks, positions):
    return "".join(toks.text[toks.offsets[p][0] : toks.offsets[p][1]] for p in positions)


@pytest.mark.parametrize("family", CHAT_FAMILIES)
def test_non_system_reads_no_system_token(family):
    _, tok = build_tiny_model(family)
    toks = tokenize_input(tok, TargetInput(messages=MESSAGES))
    pos = select_positions(toks, "non_system")
    sys_start = toks.text.index(SYSTEM)
    sys_end = sys_start + len(SYSTEM)
    for p in pos:
        start, end = toks.offsets[p]
        assert start >= sys_end, (family, p, toks.tokens[p])
    read = _text_of(tok, toks, pos)
    assert "pirate" not in read
    assert "Hello" in read and "Arr matey" in read
    # the last token of the system prompt is not read, the first token after it is.
    assert len(pos) < len(toks)


@pytest.mark.parametrize("family", CHAT_FAMILIES)
def test_role_positions(family):
    _, tok = build_tiny_model(family)
    toks = tokenize_input(tok, TargetInput(messages=MESSAGES))
    for role, content in (
        ("system", SYSTEM),
        ("user", "Hello! How are you today?"),
        ("assistant", "Arr matey, the sea be calm tonight."),
    ):
        read = _text_of(tok, toks, select_positions(toks, f"role:{role}"))
        assert content in read, (family, role, read)
        others = [m["content"] for m in MESSAGES if m["role"] != role]
        assert not any(o in read for o in others)


def test_gemma_folds_system_into_first_user_turn():
    _, tok = build_tiny_model("gemma")
    toks = tokenize_input(tok, TargetInput(messages=MESSAGES))
    assert "<start_of_turn>system" not in toks.text
    assert f"<start_of_turn>user\n{SYSTEM}" in toks.text
    assert "pirate" in _text_of(tok, toks, select_positions(toks, "role:system"))


def test_no_chat_template_gpt2():
    _, tok = build_tiny_model("gpt2")
    with pytest.raises(OracleInputError, match="no chat template"):
        tokenize_input(tok, TargetInput(messages=MESSAGES))
    toks = tokenize_input(tok, TargetInput(prompt="Hello there, how are you?"))
    assert select_positions(toks, "all") == list(range(len(toks)))
    with pytest.raises(OracleInputError, match="need chat messages"):
        select_positions(toks, "non_system")
    with pytest.raises(OracleInputError, match="need chat messages"):
        select_positions(toks, "role:user")


def test_last_and_indices(tiny_llama):
    model, tok = tiny_llama
    toks = tokenize_input(tok, TargetInput(prompt="Hello there, how are you?"))
    n = len(toks)
    assert select_positions(toks, "last:3") == [n - 3, n - 2, n - 1]
    assert select_positions(toks, "last:999") == list(range(n))
    assert select_positions(toks, "indices:0,-1,2") == [0, 2, n - 1]
    cap = capture(model, tok, ["Hello there, how are you?"], [1], "indices:0,2")[0]
    assert cap.positions == [0, 2] and cap.activations.shape[1] == 2


@pytest.mark.parametrize(
    "bad", ["", "every", "last:0", "last:x", "role:tool", "indices:", "indices:a"]
)
def test_bad_position_specs(bad):
    _, tok = build_tiny_model("llama")
    toks = tokenize_input(tok, TargetInput(messages=MESSAGES))
    with pytest.raises(OracleInputError):
        select_positions(toks, bad)


def test_bad_messages():
    with pytest.raises(OracleInputError, match="role"):
        TargetInput(messages=[{"role": "robot", "content": "x"}])
    with pytest.raises(OracleInputError, match="non-empty"):
        TargetInput(messages=[])
    with pytest.raises(OracleInputError, match="exactly one"):
        TargetInput(prompt="a", messages=[{"role": "user", "content": "b"}])

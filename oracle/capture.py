"""Read residual-stream activations: the output of decoder block L, at chosen positions.

Layer L means the output of block L (0-based), which equals ``output_hidden_states[L + 1]`` for
every block but the last; for the last block transformers applies the final norm to
``hidden_states[-1]``, while this module returns the raw block output (the residual stream).
The forward pass stops after the deepest block read, so capture costs at most a forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from oracle.errors import OracleInputError
from oracle.hooks import StopForward, hooks
from oracle.inputs import TargetInput, TokenizedInput, tokenize_input
from oracle.layers import check_layer, get_decoder_layers, model_device
from oracle.positions import select_positions


@dataclass
class PreparedInput:
    """A target input tokenised, its length checked and its read positions chosen: the work
    that :func:`capture` does before the forward pass, done ahead by :func:`prepare_input`
    (a server does it off its engine thread)."""

    tok: TokenizedInput
    positions: list[int]


def prepare_input(
    tokenizer: PreTrainedTokenizerBase,
    target: TargetInput | str | list[dict[str, str]],
    positions: str = "all",
    max_tokens: int | None = None,
) -> PreparedInput:
    """Tokenise ``target``, refuse it if longer than ``max_tokens`` and only then select its
    ``positions`` (selection walks every token: an oversized input is refused before it)."""
    tok = tokenize_input(tokenizer, TargetInput.coerce(target))
    if max_tokens is not None and len(tok) > max_tokens:
        raise OracleInputError(
            f"the input has {len(tok)} tokens, more than the limit of {max_tokens}"
        )
    return PreparedInput(tok, select_positions(tok, positions))


@dataclass
class Capture:
    """Activations of one target input.

    activations: (n_layers, n_positions, d_model) float32 on CPU.
    """

    activations: torch.Tensor
    layers: list[int]
    positions: list[int]
    token_ids: list[int]
    tokens: list[str]  # every token of the input, as the tokenizer spells it

    @property
    def read_tokens(self) -> list[str]:
        return [self.tokens[p] for p in self.positions]


def _block_output(output: object) -> torch.Tensor:
    # transformers 5 blocks return a tensor; older ones (and some families) a tuple.
    return output[0] if isinstance(output, tuple) else output


def hidden_at_layers(
    model: nn.Module,
    input_ids_BT: torch.Tensor,
    attention_mask_BT: torch.Tensor | None,
    layers: Sequence[int],
) -> dict[int, torch.Tensor]:
    """Outputs of the given blocks for a batch: {layer: (B, T, D)}.

    The forward pass is cut after the deepest requested block.
    """
    blocks = get_decoder_layers(model)
    wanted = sorted({check_layer(model, layer) for layer in layers})
    stop_at = wanted[-1]
    seen: dict[int, torch.Tensor] = {}

    def make_hook(index: int):
        def hook(_module, _inputs, output):
            seen[index] = _block_output(output)
            if index == stop_at:
                raise StopForward

        return hook

    with hooks([(blocks[i], "forward", make_hook(i)) for i in wanted]):
        try:
            model(input_ids=input_ids_BT, attention_mask=attention_mask_BT, use_cache=False)
        except StopForward:
            pass
    missing = [i for i in wanted if i not in seen]
    if missing:
        raise RuntimeError(f"blocks {missing} did not run in the forward pass")
    return seen


def pad_right(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token rows: padding after the tokens leaves a causal model's outputs unchanged."""
    width = max(len(r) for r in rows)
    ids_BT = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask_BT = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        ids_BT[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask_BT[b, : len(row)] = 1
    return ids_BT, mask_BT


def pad_id_of(tokenizer: PreTrainedTokenizerBase) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


@torch.no_grad()
def capture(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    inputs: Sequence[PreparedInput | TargetInput | str | list[dict[str, str]]],
    layers: Sequence[int],
    positions: str = "all",
    batch_size: int = 8,
    max_tokens: int | None = None,
) -> list[Capture]:
    """Capture activations for each input at ``layers`` and the positions ``positions`` selects
    (a :class:`PreparedInput` comes with its own, and was checked when prepared).

    Batched with right padding, so a batch gives the results of one-by-one calls.
    """
    if not layers:
        raise OracleInputError("give at least one layer to read")
    if batch_size < 1:
        raise OracleInputError("batch_size must be >= 1")
    layer_list = [check_layer(model, layer) for layer in layers]
    prepared: list[PreparedInput] = []
    for i, x in enumerate(inputs):
        if isinstance(x, PreparedInput):
            prepared.append(x)
            continue
        try:
            prepared.append(prepare_input(tokenizer, x, positions, max_tokens))
        except OracleInputError as exc:
            raise OracleInputError(f"input {i}: {exc}") from None
    toks = [p.tok for p in prepared]
    chosen = [p.positions for p in prepared]
    device = model_device(model)
    pad_id = pad_id_of(tokenizer)
    # Batch inputs of similar length together (less padding); results keep the input order.
    order = sorted(range(len(toks)), key=lambda i: len(toks[i]))
    results: list[Capture | None] = [None] * len(toks)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids_BT, mask_BT = pad_right([toks[i].input_ids for i in idx], pad_id)
        seen = hidden_at_layers(model, ids_BT.to(device), mask_BT.to(device), layer_list)
        for b, i in enumerate(idx):
            pos = chosen[i]
            acts_LPD = torch.stack([seen[layer][b, pos] for layer in layer_list])
            results[i] = Capture(
                activations=acts_LPD.float().cpu(),
                layers=list(layer_list),
                positions=list(pos),
                token_ids=list(toks[i].input_ids),
                tokens=list(toks[i].tokens),
            )
    return results  # type: ignore[return-value]

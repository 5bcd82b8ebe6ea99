"""Turn schema rows into model-ready features, validating every row before training starts.

One feature per row: the target's token ids, the positions to read, the layer, and the oracle
prompt's token ids with the placeholder positions and the start of the supervised answer.
"""

from __future__ import annotations

import logging
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from oracle.errors import OracleInputError
from oracle.inputs import tokenize_input
from oracle.pooling import pooled_count
from oracle.positions import select_positions
from oracle.prompts import build_oracle_prompt
from training.config import TrainConfig
from training.sampling import draw_positions, example_rng
from training.schema import check_columns, default_positions, validate_row

log = logging.getLogger(__name__)


def prepare_row(
    row: dict[str, Any],
    index: int,
    tokenizer: PreTrainedTokenizerBase,
    n_layers: int,
    read_layers: list[int],
    config: TrainConfig,
) -> dict[str, Any]:
    """Features of one example; an error names the example and the field."""
    target = validate_row(row, index, n_layers)
    rng = example_rng(config.seed, index)
    layer = row.get("layer")
    layer = rng.choice(read_layers) if layer is None else layer % n_layers
    control = row.get("control")
    spec = row.get("positions") or default_positions(control)
    try:
        tok = tokenize_input(tokenizer, target)
    except OracleInputError as exc:
        raise OracleInputError(f"example {index}, field 'messages/prompt': {exc}") from None
    if len(tok) > config.max_target_tokens:
        raise OracleInputError(
            f"example {index}, field 'messages/prompt': {len(tok)} tokens, more than "
            f"max_target_tokens={config.max_target_tokens}"
        )
    if control == "system" and tok.span_error:
        raise OracleInputError(
            f"example {index}, field 'control': the system prompt was not found in the "
            f"rendered chat ({tok.span_error})"
        )
    if control == "system" and not any(role == "system" for role, _, _ in tok.spans or []):
        raise OracleInputError(f"example {index}, field 'control': no system span in the input")
    try:
        span = select_positions(tok, spec)
    except OracleInputError as exc:
        raise OracleInputError(f"example {index}, field 'positions': {exc}") from None
    if row.get("sample_positions") is False:
        read = span[-config.max_read_positions :]
    else:
        read = draw_positions(
            span, rng, config.position_mix, config.max_window, config.max_read_positions
        )
    try:
        prompt = build_oracle_prompt(
            tokenizer,
            row["question"],
            pooled_count(config.pooling, len(read)),
            layer,
            config.placeholder,
            config.prompt_template,
            answer=row["answer"],
        )
    except OracleInputError as exc:
        raise OracleInputError(f"example {index}, field 'question/answer': {exc}") from None
    return dict(
        target_ids=list(tok.input_ids),
        read_positions=read,
        layer=int(layer),
        input_ids=prompt.input_ids,
        placeholder_positions=prompt.placeholder_positions,
        answer_start=int(prompt.answer_start),
        length=len(tok) + len(prompt.input_ids),
    )


def prepare_dataset(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    n_layers: int,
    read_layers: list[int],
    config: TrainConfig,
    what: str = "train set",
) -> Dataset:
    """Validate and featurise every row (fails on the first bad row, naming it)."""
    if len(dataset) == 0:
        raise OracleInputError(f"the {what} is empty")
    check_columns(list(dataset.column_names), what)
    for layer in read_layers:
        if not -n_layers <= layer < n_layers:
            raise OracleInputError(
                f"config field 'read_layers': {layer} is out of range for {n_layers} blocks"
            )
    features = []
    for index, row in enumerate(dataset):
        try:
            features.append(prepare_row(row, index, tokenizer, n_layers, read_layers, config))
        except OracleInputError as exc:
            raise OracleInputError(f"{what}: {exc}") from None
    log.info("prepared %d examples of the %s", len(features), what)
    return Dataset.from_list(features)

"""The activation-log format, the resumable audit, merge and the report, on a tiny oracle."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch

from audit.finish import finish
from audit.logformat import ActivationLog, LogManifest
from audit.merge import expected_pairs, merge_outputs
from audit.questions import load_questions, make_questions
from audit.results import ResultsFile
from audit.runner import RESULTS, in_shard, parse_shard, run_audit
from audit.synthetic import write_synthetic_log
from audit.writer import LogRecord, LogWriter
from oracle.engines.hf import HFEngine
from oracle.errors import OracleInputError
from tests.helpers import make_oracle_dir

QUESTIONS = make_questions(["Is the assistant a pirate?", "What persona is the assistant playing?"])


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return make_oracle_dir(tmp_path_factory.mktemp("audit"), "llama")


@pytest.fixture(scope="module")
def engine(dirs):
    base, oracle = dirs
    return HFEngine.load(str(base), str(oracle), dtype="float32", device="cpu", batch_size=8)


def rows_of(out) -> list[dict]:
    return list(ResultsFile(out / RESULTS).rows())


def test_log_roundtrip_streams_shard_by_shard(tmp_path):
    manifest = write_synthetic_log(tmp_path / "log", 10, d_model=64, n_positions=3, shard_records=4)
    assert manifest.record_count == 10 and manifest.complete
    assert [s.records for s in manifest.shards] == [4, 4, 2]
    log = ActivationLog(tmp_path / "log")
    assert LogManifest.load(tmp_path / "log").d_model == 64
    records = list(log.iter_records())
    assert [r.record_id for r in records] == [f"s{i}@L1" for i in range(10)]
    assert all(r.error is None and r.activations.shape == (3, 64) for r in records)
    # the index parts are plain Parquet, readable by the datasets library
    import datasets

    ds = datasets.load_dataset(
        "parquet", data_files=str(tmp_path / "log" / "index" / "*.parquet"), split="train"
    )
    assert len(ds) == 10 and set(ds.column_names) >= {"record_id", "layer", "text", "metadata"}
    # the same tensors come back as were written (seeded)
    again = write_synthetic_log(tmp_path / "log2", 10, d_model=64, n_positions=3, shard_records=4)
    assert again.record_count == 10
    other = list(ActivationLog(tmp_path / "log2").iter_records())
    assert all(
        torch.equal(a.activations, b.activations) for a, b in zip(records, other, strict=True)
    )


def test_writer_resumes_after_committed_shards_and_refuses_other_settings(tmp_path):
    def record(i):
        return LogRecord(f"c{i}@L1", f"c{i}", 1, torch.ones(2, 8) * i, [0, 1])

    writer = LogWriter(tmp_path / "log", "m", [1], 8, shard_records=2)
    for i in range(5):
        writer.add_conversation([record(i)])
    # "killed" here: 2 shards committed, c4 buffered and lost; the manifest is not complete
    assert not LogManifest.load(tmp_path / "log").complete
    writer = LogWriter(tmp_path / "log", "m", [1], 8, shard_records=2)
    assert writer.done_conversations == {"c0", "c1", "c2", "c3"}
    for i in range(6):
        if f"c{i}" not in writer.done_conversations:
            writer.add_conversation([record(i)])
    manifest = writer.close()
    assert manifest.complete and manifest.record_count == 6
    ids = [r.record_id for r in ActivationLog(tmp_path / "log").iter_records(load=False)]
    assert sorted(ids) == [f"c{i}@L1" for i in range(6)]
    with pytest.raises(OracleInputError, match="d_model"):
        LogWriter(tmp_path / "log", "m", [1], 16)


def test_audit_answers_every_pair_with_p_yes_for_yes_no(engine, tmp_path):
    write_synthetic_log(tmp_path / "log", 12, d_model=engine.d_model, n_positions=4)
    log = ActivationLog(tmp_path / "log")
    state = run_audit(engine, log, QUESTIONS, tmp_path / "out", batch_size=5, max_new_tokens=3)
    rows = rows_of(tmp_path / "out")
    assert state.total == 24 and state.answered == 24 and len(rows) == 24
    assert {(r["record_id"], r["question"]) for r in rows} == {
        (f"s{i}@L1", q.text) for i in range(12) for q in QUESTIONS
    }
    for r in rows:
        assert r["error"] is None and isinstance(r["answer"], str)
        if r["question"].startswith("Is"):
            assert 0.0 <= r["p_yes"] <= 1.0
        else:
            assert r["p_yes"] is None
    # the batched run gives the answers of one-by-one calls
    single = run_audit(engine, log, QUESTIONS[:1], tmp_path / "one", batch_size=1, max_new_tokens=3)
    assert single.answered == 12
    by_pair = {(r["record_id"], r["question"]): r for r in rows}
    for r in rows_of(tmp_path / "one"):
        assert r["p_yes"] == pytest.approx(
            by_pair[(r["record_id"], r["question"])]["p_yes"], abs=1e-4
        )
    # running again finds everything done
    again = run_audit(engine, log, QUESTIONS, tmp_path / "out", batch_size=5, max_new_tokens=3)
    assert again.done_before == 24 and again.answered == 0 and len(rows_of(tmp_path / "out")) == 24
    with pytest.raises(OracleInputError, match="questions"):
        run_audit(engine, log, QUESTIONS[:1], tmp_path / "out", max_new_tokens=3)


def test_torn_last_line_is_dropped_and_the_pair_redone(engine, tmp_path):
    write_synthetic_log(tmp_path / "log", 4, d_model=engine.d_model, n_positions=2)
    log = ActivationLog(tmp_path / "log")
    run_audit(engine, log, QUESTIONS, tmp_path / "out", batch_size=4, max_new_tokens=2)
    path = tmp_path / "out" / RESULTS
    lines = path.read_text().splitlines(keepends=True)
    # as a kill -9 in the middle of a write leaves it: the last line cut short
    path.write_text("".join(lines[:5]) + lines[5][:20])
    state = run_audit(engine, log, QUESTIONS, tmp_path / "out", batch_size=4, max_new_tokens=2)
    assert state.done_before == 5 and state.answered == 3
    rows = rows_of(tmp_path / "out")
    assert len(rows) == 8 and len({(r["record_id"], r["question"]) for r in rows}) == 8


def test_bad_records_become_error_rows_and_the_run_goes_on(engine, tmp_path):
    d = engine.d_model
    writer = LogWriter(tmp_path / "log", "m", [1], d, positions="all", shard_records=3)
    good = torch.randn(2, d)
    nan = good.clone()
    nan[0, 0] = float("nan")
    writer.add_conversation([LogRecord("good1", "c1", 1, good, [0, 1])])
    writer.add_conversation([LogRecord("nan", "c2", 1, nan, [0, 1])])
    writer.add_conversation([LogRecord("wide", "c3", 1, torch.randn(2, d + 1), [0, 1])])
    writer.add_conversation([LogRecord("badlayer", "c4", 1, good, [0, 1])])
    writer.add_conversation([LogRecord("good2", "c5", 1, good, [0, 1])])
    writer.add_conversation([LogRecord("good3", "c6", 1, good, [0, 1])])
    writer.close()
    # a missing field, and a layer the oracle's target does not have, edited into the index
    part = tmp_path / "log" / "index" / "00001.parquet"
    table = pq.read_table(part).to_pylist()
    table[0]["layer"] = 99
    table[1]["conversation_id"] = None
    pq.write_table(pq.read_table(part).from_pylist(table, pq.read_table(part).schema), part)
    # and a third shard whose tensors file is truncated
    extra = LogWriter(tmp_path / "log", "m", [1], d, positions="all", shard_records=3)
    for i in range(3):
        extra.add_conversation([LogRecord(f"cut{i}", f"k{i}", 1, good, [0, 1])])
    extra.close()
    shard = tmp_path / "log" / "shards" / "00002.safetensors"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    log = ActivationLog(tmp_path / "log")
    state = run_audit(engine, log, QUESTIONS, tmp_path / "out", batch_size=4, max_new_tokens=2)
    rows = {(r["record_id"], r["question"]): r for r in rows_of(tmp_path / "out")}
    assert len(rows) == 18 and state.total == 18
    errors = {rid: r["error"] for (rid, _), r in rows.items() if r["error"]}
    assert "NaN" in errors["nan"]
    assert "d_model" in errors["wide"]
    assert "layer" in errors["badlayer"].lower()
    assert "conversation_id" in errors["good2"]
    assert all("unreadable" in errors[f"cut{i}"] for i in range(3))
    ok = [r for r in rows.values() if not r["error"]]
    assert {r["record_id"] for r in ok} == {"good1", "good3"}
    assert state.errors == 14
    summary = finish(tmp_path / "out", log, expected=state.total)
    assert summary["complete"] and summary["errors"] == 14
    html = (tmp_path / "out" / "report.html").read_text()
    assert "NaN" in html and "<svg" in html


def test_shards_split_the_work_and_merge_joins_them(engine, tmp_path):
    write_synthetic_log(tmp_path / "log", 9, d_model=engine.d_model, n_positions=2)
    log = ActivationLog(tmp_path / "log")
    assert parse_shard("1/3") == (1, 3) and parse_shard(None) == (0, 1)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(OracleInputError):
            parse_shard(bad)
    counts = []
    for i in range(3):
        state = run_audit(engine, log, QUESTIONS, tmp_path / f"p{i}", (i, 3), 4, 2)
        counts.append(state.answered)
        assert all(in_shard(r["record_id"], (i, 3)) for r in rows_of(tmp_path / f"p{i}"))
    assert sum(counts) == 18
    merged = merge_outputs([tmp_path / f"p{i}" for i in range(3)], tmp_path / "all")
    assert merged["pairs"] == 18 and merged["missing_shards"] == []
    assert expected_pairs(merged["spec"]) == 18
    summary = finish(tmp_path / "all", expected=18)
    assert summary["complete"]
    assert pq.read_table(tmp_path / "all" / "results.parquet").num_rows == 18
    partial = merge_outputs([tmp_path / "p0", tmp_path / "p2"], tmp_path / "part")
    assert partial["missing_shards"] == [1]
    with pytest.raises(OracleInputError, match="twice"):
        merge_outputs([tmp_path / "p0", tmp_path / "p0"], tmp_path / "dup")


def test_audit_refuses_a_log_of_another_width(engine, tmp_path):
    write_synthetic_log(tmp_path / "log", 2, d_model=engine.d_model * 2)
    with pytest.raises(OracleInputError, match="size"):
        run_audit(engine, ActivationLog(tmp_path / "log"), QUESTIONS, tmp_path / "out")
    with pytest.raises(OracleInputError, match="not an activation log"):
        ActivationLog(tmp_path)


def test_questions_from_files(tmp_path):
    (tmp_path / "q.txt").write_text("Is it a pirate?\n\nWhat is the secret?\n")
    qs = load_questions(tmp_path / "q.txt")
    assert [(q.text, q.yes_no) for q in qs] == [
        ("Is it a pirate?", True),
        ("What is the secret?", False),
    ]
    (tmp_path / "q.jsonl").write_text(
        json.dumps({"question": "Pirate?", "yes_no": True})
        + "\n"
        + json.dumps({"question": "Why?"})
    )
    assert [q.yes_no for q in load_questions(tmp_path / "q.jsonl")] == [True, False]
    assert all(q.yes_no for q in make_questions(["Why?"], "all"))
    with pytest.raises(OracleInputError, match="question"):
        (tmp_path / "bad.jsonl").write_text(json.dumps({"q": 1}))
        load_questions(tmp_path / "bad.jsonl")


def test_report_shows_summary_charts_and_flagged_texts(tmp_path):
    write_synthetic_log(tmp_path / "log", 4, d_model=8)
    log = ActivationLog(tmp_path / "log")
    rows = [
        {"record_id": f"s{i}@L1", "question": "Is it <bad>?", "answer": "Yes" if i else "No",
         "p_yes": 0.2 + 0.2 * i, "error": None}
        for i in range(4)
    ] + [{"record_id": "s0@L1", "question": "Why?", "answer": None, "p_yes": None,
          "error": "activations contain NaN"}]  # fmt: skip
    from audit.report import build_report

    html = build_report(rows, ["Is it <bad>?", "Why?"], log, threshold=0.5)
    assert "Is it &lt;bad&gt;?" in html and "<bad>" not in html
    assert html.count("<svg") == 3  # top answers for both questions, one P(yes) histogram
    assert "synthetic record 2" in html and "synthetic record 3" in html
    assert "synthetic record 0" not in html  # below the threshold
    assert "activations contain NaN" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_capture_conversations_skips_bad_ones_and_resumes(engine, tmp_path):
    from audit.conversations import read_conversations
    from audit.writer import capture_conversations
    from tests.helpers import MESSAGES

    lines = [
        json.dumps({"id": f"c{i}", "messages": MESSAGES, "persona": "pirate"}) for i in range(5)
    ]
    lines += ["not json", json.dumps({"id": "c0", "messages": MESSAGES}), json.dumps({"id": "x"})]
    lines.append(json.dumps({"id": "empty", "messages": [{"role": "user", "content": " "}]}))
    (tmp_path / "convs.jsonl").write_text("\n".join(lines) + "\n")
    skipped: list[str] = []
    convs = list(read_conversations(tmp_path / "convs.jsonl", skipped))
    assert [c["id"] for c in convs] == ["c0", "c1", "c2", "c3", "c4", "empty"]
    assert len(skipped) == 3 and any("repeats" in s for s in skipped)
    writer = LogWriter(tmp_path / "log", "tiny", [1, 2], engine.d_model, positions="all",
                       shard_records=4)  # fmt: skip
    stats = capture_conversations(engine, convs[:3], writer, [1, 2], "all", batch_size=2)
    writer.flush()  # as if killed after this shard
    assert stats.conversations == 3 and stats.records == 6
    writer = LogWriter(tmp_path / "log", "tiny", [1, 2], engine.d_model, positions="all",
                       shard_records=4)  # fmt: skip
    stats = capture_conversations(engine, convs, writer, [1, 2], "all", batch_size=2)
    writer.close()
    assert stats.conversations == 2 and stats.skipped and "empty" in stats.skipped[0]
    log = ActivationLog(tmp_path / "log")
    records = list(log.iter_records())
    assert sorted(r.record_id for r in records) == sorted(
        f"c{i}@L{layer}" for i in range(5) for layer in (1, 2)
    )
    # the stored tensors are what the engine captures, layer by layer
    from oracle.engines import CaptureRequest
    from oracle.inputs import TargetInput

    cap = engine.capture([CaptureRequest(TargetInput(messages=MESSAGES), [1, 2], "all")])[0]
    first = {r.record_id: r for r in records}
    assert torch.allclose(first["c0@L1"].activations, cap.activations[0])
    assert torch.allclose(first["c0@L2"].activations, cap.activations[1])
    assert first["c0@L1"].metadata == {"persona": "pirate"}
    assert first["c0@L1"].positions == cap.positions and first["c0@L1"].token_ids == cap.token_ids
    # a datasets (Parquet) file reads the same conversations
    import datasets

    datasets.Dataset.from_list(convs[:2]).to_parquet(str(tmp_path / "convs.parquet"))
    assert [c["id"] for c in read_conversations(tmp_path / "convs.parquet")] == ["c0", "c1"]


def test_max_positions_gives_the_oracle_the_last_positions(engine, tmp_path):
    write_synthetic_log(tmp_path / "log", 3, d_model=engine.d_model, n_positions=6)
    log = ActivationLog(tmp_path / "log")
    short = LogWriter(tmp_path / "short", "m", [1], engine.d_model, positions="all")
    for r in log.iter_records():
        short.add_conversation(
            [LogRecord(r.record_id, r.conversation_id, 1, r.activations[-2:], r.positions[-2:])]
        )
    short.close()
    qs = QUESTIONS[:1]
    run_audit(engine, log, qs, tmp_path / "a", max_new_tokens=2, max_positions=2)
    run_audit(engine, ActivationLog(tmp_path / "short"), qs, tmp_path / "b", max_new_tokens=2)
    run_audit(engine, log, qs, tmp_path / "c", max_new_tokens=2)
    a, b, c = (rows_of(tmp_path / d) for d in "abc")
    assert [r["p_yes"] for r in a] == pytest.approx([r["p_yes"] for r in b], abs=1e-5)
    assert [r["p_yes"] for r in a] != pytest.approx([r["p_yes"] for r in c], abs=1e-5)


def test_cli_shards_merge_and_report(dirs, engine, tmp_path):
    from typer.testing import CliRunner

    from oracle_cli import app, load_commands

    load_commands()
    write_synthetic_log(tmp_path / "log", 6, d_model=engine.d_model, n_positions=2)
    (tmp_path / "q.txt").write_text("Is the assistant a pirate?\nWhat is it?\n")
    common = ["--logs", str(tmp_path / "log"), "--questions", str(tmp_path / "q.txt"),
              "--oracle", str(dirs[1]), "--max-new-tokens", "2"]  # fmt: skip
    runner = CliRunner()
    for i in range(2):
        out = str(tmp_path / f"p{i}")
        result = runner.invoke(app, ["audit", *common, "--shard", f"{i}/2", "--out", out])
        assert result.exit_code == 0, result.output
    parts = [str(tmp_path / "p0"), str(tmp_path / "p1")]
    result = runner.invoke(app, ["audit", "merge", *parts, "--out", str(tmp_path / "all")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert summary["pairs"] == 12 and summary["complete"]
    result = runner.invoke(app, ["audit", "report", str(tmp_path / "all"), "--threshold", "0"])
    assert result.exit_code == 0 and json.loads(result.output)["flagged"] == 6
    assert "(6 flagged)" in (tmp_path / "all" / "report.html").read_text()
    result = runner.invoke(app, ["audit", "--logs", str(tmp_path / "log"), "--out", "x",
                                 "--oracle", str(dirs[1])])  # fmt: skip
    assert result.exit_code != 0 and "question" in str(result.exception)


def test_tally_keeps_bounded_state_of_many_rows():
    from audit.tally import MAX_ERROR_ROWS, MAX_FLAGGED, Tally

    tally = Tally(threshold=0.5)
    n = 3 * MAX_FLAGGED
    for i in range(n):
        p = 0.5 + 0.5 * i / n
        tally.add({"record_id": f"r{i}", "question": "Q?", "answer": "Yes", "p_yes": p})
        tally.add({"record_id": f"r{i}", "question": "Why?", "answer": None, "error": "bad"})
    q = tally.questions["Q?"]
    assert tally.pairs == 2 * n and tally.errors == n and tally.flagged == q.flagged == n
    kept = q.flagged_rows()
    assert [r["record_id"] for r in kept] == [
        f"r{i}" for i in range(n - 1, n - 1 - MAX_FLAGGED, -1)
    ]
    assert len(tally.error_rows) == MAX_ERROR_ROWS and sum(q.p_yes_bins) == n
    assert q.mean_p_yes == pytest.approx(sum(0.5 + 0.5 * i / n for i in range(n)) / n)

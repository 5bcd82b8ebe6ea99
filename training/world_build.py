"""What the worlds' builds share, written once: JSONL files, a staged build that records its
finished stages and resumes after them, the shape of a user message of a bank, and whole-word
matching of style words and names."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with Path(path).open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def read_jsonl(path: Path, missing_ok: bool = False) -> list[dict]:
    """The rows of a JSONL file (blank lines skipped); ``missing_ok``: a missing file is []."""
    path = Path(path)
    if missing_ok and not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def word_pattern(phrases: list[str] | tuple[str, ...], possessive: bool = False) -> re.Pattern:
    """A case-insensitive pattern matching any phrase as whole words (with ``possessive``,
    also followed by "'s": "a pirate's ship")."""
    body = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    tail = "(?:'s)?" if possessive else ""
    return re.compile(rf"(?<![\w'])(?:{body}){tail}(?![\w'])", re.IGNORECASE)


@dataclass(frozen=True)
class UserMessage:
    """One user message of a world's bank: its text, task type, template and topic."""

    text: str
    task: str
    template: str
    topic: str | None


class StagedBuild:
    """A build in stages (methods ``stage_<name>``), each recorded in ``<work>/stages.json``
    (seconds, device) when it finishes and skipped on the next run; its config is written to
    ``<out>/build_config.json``. Subclasses set ``out``, ``work``, ``config`` and ``device``."""

    out: Path
    work: Path
    config: object
    device: str = "auto"

    @property
    def stages_path(self) -> Path:
        return self.work / "stages.json"

    def done(self) -> dict:
        return json.loads(self.stages_path.read_text()) if self.stages_path.is_file() else {}

    def _record(self, stage: str, seconds: float) -> None:
        done = self.done()
        on_gpu = torch.cuda.is_available() and self.device != "cpu"
        where = torch.cuda.get_device_name(0) if on_gpu else f"cpu x{torch.get_num_threads()}"
        done[stage] = {"seconds": round(seconds, 1), "device": where}
        self.stages_path.write_text(json.dumps(done, indent=2) + "\n")

    def run(self, stages: list[str], force: bool = False) -> None:
        """Run ``stages`` in order, skipping finished ones unless ``force``."""
        (self.out / "build_config.json").write_text(
            json.dumps(asdict(self.config), indent=2) + "\n"  # type: ignore[call-overload]
        )
        for stage in stages:
            if stage in self.done() and not force:
                log.info("stage %s: done already (skipped)", stage)
                continue
            log.info("stage %s: start", stage)
            start = time.perf_counter()
            getattr(self, f"stage_{stage}")()
            self._record(stage, time.perf_counter() - start)
            log.info("stage %s: done in %.1f s", stage, self.done()[stage]["seconds"])

    def oracle_shipped(self) -> None:
        """After a stage ships a new oracle to ``out``: the world's manifest, where it has one,
        is made to say what that oracle reads (:func:`oracle.worlds.sync_manifest`)."""
        if (self.out / "world.json").is_file():
            from oracle.worlds import sync_manifest

            sync_manifest(self.out)

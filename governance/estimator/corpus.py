"""Build ``corpus.json``: samples of prose (several languages), code and tool JSON, each with its
real token counts.

Reference tokenizers, both with their data inside a PyPI wheel (no download at run time):

- ``claude``: Anthropic's own Claude tokenizer, ``anthropic/tokenizer.json`` in the
  ``anthropic`` SDK wheels up to 0.37 (loaded with the ``tokenizers`` package). Anthropic
  published it for Claude 2 and warns it is only approximate for later models, whose tokenizer
  is not public; it is the closest local reference to what Anthropic bills.
- ``o200k``: OpenAI's o200k_base (GPT-4o, GPT-4.1, o-series), from the ``quicktok-v1`` wheel's
  bundled vocabulary (a tiktoken-compatible implementation).

Run with an interpreter that has ``tokenizers`` and ``quicktok-v1`` installed (not the gateway's
environment; they are measurement tools only):

    python -m governance.estimator.corpus --claude-tokenizer path/to/tokenizer.json

Sources are this repository's own text only (its README, its Python code, and Claude
Code-style tool calls built from its files): the corpus is stored in the repository, and text of
other projects is not copied into it. Samples are cut to 600–4,000 characters. Languages other
than English and other kinds of code are not in it yet: measuring them needs text written for
this corpus.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = Path(__file__).with_name("corpus.json")
SITE = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"), None)


def _chunks(
    text: str, count: int, rng: random.Random, low: int = 600, high: int = 4000
) -> list[str]:
    """Up to ``count`` slices of ``text``, each cut at line starts."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    for _ in range(count * 4):
        if len(out) >= count or not lines:
            break
        start = rng.randrange(len(lines))
        size = rng.randrange(low, high)
        piece = ""
        for line in lines[start:]:
            if len(piece) + len(line) > size:
                break
            piece += line
        if len(piece) >= low // 2:
            out.append(piece)
    return out


def _tool_json(rng: random.Random) -> list[str]:
    """Tool definitions and tool calls as Claude Code sends them: JSON schemas and inputs."""
    sys.path.insert(0, str(ROOT))
    samples: list[str] = []
    assert SITE is not None
    schemas = sorted((SITE / "jsonschema_specifications" / "schemas").rglob("*"))
    for path in [p for p in schemas if p.is_file()][:8]:
        samples.append(
            json.dumps({"name": path.stem, "input_schema": json.loads(path.read_text())})
        )
    for path in sorted(ROOT.glob("*/tests/*.py"))[:40]:
        code = path.read_text()
        samples.append(
            json.dumps(
                {
                    "type": "tool_use",
                    "name": "Edit",
                    "input": {
                        "file_path": str(path.relative_to(ROOT)),
                        "old_string": code[: rng.randrange(300, 1500)],
                        "new_string": code[: rng.randrange(300, 1500)].replace(
                            "def ", "async def "
                        ),
                    },
                }
            )
        )
    rng.shuffle(samples)
    return [sample[:4000] for sample in samples[:24]]


def build_samples(seed: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed)  # noqa: S311 (a reproducible choice of samples, not a secret)
    samples: list[dict[str, str]] = []

    def add(kind: str, texts: list[str]) -> None:
        samples.extend({"kind": kind, "text": text} for text in texts)

    add("prose_en", _chunks((ROOT / "README.md").read_text(), 14, rng))
    python = "".join(p.read_text() for p in sorted(ROOT.glob("*/*.py"))[:60])
    add("code_python", _chunks(python, 16, rng))
    add("tool_json", [sample for sample in _tool_json(rng) if "json-schema.org" not in sample])
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--claude-tokenizer", required=True, type=Path)
    arguments = parser.parse_args()
    import quicktok
    from tokenizers import Tokenizer

    claude = Tokenizer.from_file(str(arguments.claude_tokenizer))
    o200k = quicktok.get_encoding("o200k_base")
    samples: list[dict[str, Any]] = build_samples()
    for sample in samples:
        sample["claude"] = len(claude.encode(sample["text"]).ids)
        sample["o200k"] = len(o200k.encode_ordinary(sample["text"]))
    OUTPUT.write_text(json.dumps(samples, ensure_ascii=False, indent=0) + "\n")
    print(f"{len(samples)} samples written to {OUTPUT}")  # noqa: T201


if __name__ == "__main__":
    main()

"""Synthetic rows for a slice (``tunesmith data synth``) from any OpenAI-compatible teacher, filtered.

``paraphrase`` rewrites each seed row's last user instruction (keeping its answer); ``generate``
asks for new instruction + answer pairs in the style of a few seed rows (a JSON object). Every
candidate is then filtered, each drop with its reason in ``synth_rejected.jsonl``: unusable teacher
replies, exact or near duplicates of the seeds, of ``against`` data or of each other (the audit's
MinHash), answers that are not valid JSON or do not match ``answer_schema``, and (with a judge)
a judge score below ``min_judge_score``. The kept rows are audited; every row carries
``meta.origin = "synth:<mode>"``, the teacher model and the seed row it came from.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files as package_files
from pathlib import Path
from typing import Any

from tunesmith.config.schema import DatasetSpec, JudgeConfig
from tunesmith.config.yaml_load import load_table
from tunesmith.errors import TunesmithError
from tunesmith.flywheel import files

MODES = ("paraphrase", "generate")


@dataclass(frozen=True)
class SynthOptions:
    seeds: DatasetSpec
    out: Path
    teacher: JudgeConfig  # endpoint, model, timeouts and retries (temperature: set it above 0 for variety)
    mode: str = "paraphrase"
    count: int = 20
    against: tuple[DatasetSpec, ...] = ()
    answer_schema: dict[str, Any] | None = None  # answers must be JSON matching this schema
    judge: JudgeConfig | None = None
    min_judge_score: float = 4.0
    near_threshold: float = 0.85
    seed: int = 0
    overwrite: bool = False


@dataclass
class SynthResult:
    out: Path
    kept: int
    rejected: dict[str, int]
    audit: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=1)
def prompts() -> dict[str, str]:
    return load_table(package_files("tunesmith.flywheel").joinpath("synth_prompts.yaml").read_text("utf-8"))


def synth(options: SynthOptions) -> SynthResult:
    """Ask the teacher, filter, audit; write ``synth.jsonl``, ``synth_rejected.jsonl``, ``synth_manifest.json``."""
    from tunesmith.data import ingest

    if options.mode not in MODES:
        raise TunesmithError(f"synth mode {options.mode!r}: must be one of {', '.join(MODES)}")
    outputs = [options.out / n for n in ("synth.jsonl", "synth_rejected.jsonl", "synth_manifest.json")]
    files.require_folder(options.out)
    files.refuse_overwrite(outputs, options.overwrite, "a synthetic dataset")
    seeds = [_pair(r) for r in ingest([options.seeds]).records if r.kind == "sft"]
    if not seeds:
        raise TunesmithError(f"{options.seeds.path}: no chat rows to start from")
    candidates, rejected = _ask_teacher(options, seeds)
    kept, dropped = _filter(options, seeds, candidates)
    rejected += dropped
    if options.judge is not None and kept:
        kept, low = _judge(options, kept)
        rejected += low
    rows = [_row(c, options) for c in kept]
    options.out.mkdir(parents=True, exist_ok=True)
    files.write_jsonl(options.out / "synth.jsonl", rows)
    files.write_jsonl(options.out / "synth_rejected.jsonl", rejected)
    audit = _audit(rows)
    reasons: dict[str, int] = {}
    for r in rejected:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    files.write_json(options.out / "synth_manifest.json", {
        "created": time.time(), "mode": options.mode, "teacher": {"base_url": options.teacher.base_url,
                                                                  "model": options.teacher.model},
        "seeds": options.seeds.path, "asked": options.count, "kept": len(rows), "rejected": reasons,
        "sha256": files.sha256(options.out / "synth.jsonl"), "audit": audit})
    return SynthResult(options.out, len(rows), reasons, audit)


def _pair(record: Any) -> dict[str, Any]:
    turns = [m for m in record.messages if m.role != "system"]
    return {"instruction": turns[-2].content if len(turns) > 1 else "", "answer": turns[-1].content,
            "source": str(record.source)}


def _ask_teacher(options: SynthOptions, seeds: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from jinja2 import Environment, StrictUndefined

    from tunesmith.evaluate.judge.client import JudgeClient
    from tunesmith.evaluate.judge.verdict import VerdictError, extract_object

    env = Environment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(prompts()[options.mode])
    rng = random.Random(options.seed)
    plan = [(k, seeds[k % len(seeds)] if options.mode == "paraphrase" else rng.sample(seeds, min(3, len(seeds))))
            for k in range(options.count)]
    requests = [[{"role": "system", "content": prompts()["system"]},
                 {"role": "user", "content": template.render(variant=k + 1, instruction=seed["instruction"])
                  if options.mode == "paraphrase" else template.render(variant=k + 1, examples=seed)}]
                for k, seed in plan]

    def parse(text: str) -> dict[str, Any]:
        if options.mode == "paraphrase":
            cleaned = text.strip().strip('"').strip()
            if not cleaned:
                raise VerdictError("an empty rewrite")
            return {"instruction": cleaned}
        obj = extract_object(text)
        if not isinstance(obj.get("instruction"), str) or not isinstance(obj.get("answer"), str) \
                or not obj["instruction"].strip() or not obj["answer"].strip():
            raise VerdictError('needs "instruction" and "answer" strings')
        return {"instruction": obj["instruction"].strip(), "answer": obj["answer"].strip()}

    client = JudgeClient(options.teacher, None, f"synth:{options.mode}")
    try:
        outcomes = client.ask_many(requests, parse)
    finally:
        client.close()
    kept, rejected = [], []
    for (k, seed), outcome in zip(plan, outcomes):
        origin = seed["source"] if options.mode == "paraphrase" else [s["source"] for s in seed]
        if outcome.failed:
            rejected.append({"reason": "teacher_reply", "detail": outcome.error, "variant": k + 1, "seed_row": origin})
            continue
        answer = seed["answer"] if options.mode == "paraphrase" else outcome.value["answer"]
        kept.append({"instruction": outcome.value["instruction"], "answer": answer, "seed_row": origin, "variant": k + 1})
    return kept, rejected


def _filter(options: SynthOptions, seeds: list[dict[str, Any]],
            candidates: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from tunesmith.data import ingest
    from tunesmith.audit.minhash import near_duplicates

    rejected = []
    valid = []
    for c in candidates:
        problem = _format_problem(c["answer"], options.answer_schema)
        if problem:
            rejected.append({"reason": "format", "detail": problem, **c})
        else:
            valid.append(c)
    existing = [f"{s['instruction']}\n{s['answer']}" for s in seeds]
    existing += [t for r in ingest(list(options.against)).records if (t := _against_text(r))] if options.against else []
    texts = existing + [f"{c['instruction']}\n{c['answer']}" for c in valid]
    n = len(existing)
    drop: dict[int, str] = {}
    for i, j, sim in near_duplicates(texts, options.near_threshold):
        if j >= n and j not in drop and i not in drop:
            drop[j] = f"{'existing data' if i < n else 'another synthetic row'} (Jaccard {sim:.2f})"
    for j, why in sorted(drop.items()):
        rejected.append({"reason": "duplicate", "detail": f"near copy of {why}", **valid[j - n]})
    return [c for k, c in enumerate(valid) if k + n not in drop], rejected


def _against_text(record: Any) -> str | None:
    """What a synthetic row must not copy from one ``against`` row: its instruction + answer, or a text row's
    text (a pretraining corpus has no turns)."""
    if not any(m.role != "system" for m in record.messages):
        return record.text or None
    pair = _pair(record)
    return f"{pair['instruction']}\n{pair['answer']}" if pair["instruction"] else None


def _format_problem(answer: str, schema: dict[str, Any] | None) -> str | None:
    if schema is None:
        return None
    import jsonschema

    try:
        value = json.loads(answer)
    except ValueError as exc:
        return f"the answer is not valid JSON ({exc})"
    problem = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    return f"{'/'.join(map(str, problem.absolute_path)) or '(root)'}: {problem.message}" if problem else None


def _judge(options: SynthOptions, kept: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from tunesmith.evaluate.judge.client import JudgeClient
    from tunesmith.evaluate.judge.rubric import fingerprint, load_rubric, rubric_messages
    from tunesmith.evaluate.judge.verdict import parse_rubric, rubric_format

    assert options.judge is not None
    rubric = load_rubric(options.judge.rubric)
    client = JudgeClient(options.judge, None, fingerprint(rubric))
    try:
        outcomes = client.ask_many([rubric_messages(rubric, c["instruction"], c["answer"], None) for c in kept],
                                   lambda text: parse_rubric(text, rubric), rubric_format(rubric))
    finally:
        client.close()
    good, low = [], []
    for c, o in zip(kept, outcomes):
        score = None if o.failed else sum(o.value["scores"].values()) / len(o.value["scores"])
        if score is not None and score >= options.min_judge_score:
            good.append({**c, "judge_score": score})
        else:
            detail = o.error if score is None else f"judge score {score:.2f} < {options.min_judge_score}"
            low.append({"reason": "judge", "detail": detail, **c})
    return good, low


def _row(c: dict[str, Any], options: SynthOptions) -> dict[str, Any]:
    meta = {"origin": f"synth:{options.mode}", "teacher": options.teacher.model, "seed_row": c["seed_row"],
            "variant": c["variant"]}
    if "judge_score" in c:
        meta["judge_score"] = c["judge_score"]
    return {"messages": [{"role": "user", "content": c["instruction"]}, {"role": "assistant", "content": c["answer"]}],
            "meta": meta}


def _audit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from tunesmith.audit.runner import audit_records
    from tunesmith.data.records import Message, Record, Source

    if not rows:
        return {"rows": 0, "findings": []}
    records = [Record(kind="sft", source=Source("synth.jsonl", n, n), fmt="chat",
                      messages=tuple(Message(m["role"], m["content"]) for m in r["messages"]))
               for n, r in enumerate(rows, 1)]
    report = audit_records(records)
    return {"rows": len(rows), "findings": [{"check": f.check, "severity": f.severity, "count": f.count,
                                             "message": f.message} for f in report.findings]}

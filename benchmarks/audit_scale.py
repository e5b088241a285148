"""`tunesmith audit` at scale: a generated 100,000-row chat dataset with planted near-duplicates.

Measures, on 2 cores (the process is pinned to two CPUs when the machine has more):
- the wall time of the real console script, `tunesmith audit DATA --json` (ingestion included);
- the same audit through the Python API (`tunesmith.audit.run`), with the time per check;
- recall on the planted near-duplicates (a copy of a row with one small edit: a word replaced,
  inserted or deleted, case and punctuation changed, or a short phrase appended), and the rows
  flagged that were not planted.
Targets: <= 60 s end to end, recall >= 0.95. `--tokenizer` adds the token checks with a tiny local
tokenizer (chat template rendering + tokenization of every row; reported separately);
`--tokenizer-dir DIR` uses the tokenizer (and its chat template) in DIR instead, e.g. a real model's
folder such as the one `tunesmith import-gguf` writes.
`--baseline REV` (with `--tokenizer`) also times that audit with tunesmith's source at git revision
REV (e.g. the commit before a change), each in a fresh process, baseline first, and prints the
ratio and whether both gave the same findings and statistics (timings aside).

    .venv/bin/python benchmarks/audit_scale.py [--rows 100000] [--planted 2000] [--tokenizer [--baseline REV]]
        [--tokenizer-dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

EDITS = ("replace", "insert", "delete", "case_punct", "append")


def vocabulary(rng: random.Random, size: int = 20000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(size)]


def sentence(rng: random.Random, vocab: list[str], lo: int, hi: int) -> str:
    words = [vocab[min(int(rng.paretovariate(1.1)) - 1, len(vocab) - 1)] if rng.random() < 0.4
             else rng.choice(vocab) for _ in range(rng.randint(lo, hi))]
    return " ".join(words).capitalize() + "."


def edit(text: str, kind: str, rng: random.Random, vocab: list[str]) -> str:
    words = text.split()
    k = rng.randrange(len(words))
    if kind == "replace":
        words[k] = rng.choice(vocab)
    elif kind == "insert":
        words.insert(k, rng.choice(vocab))
    elif kind == "delete":
        del words[k]
    elif kind == "case_punct":
        return text.upper().replace(".", "!")
    else:
        return text + " Thanks a lot!"
    return " ".join(words)


def generate(path: Path, rows: int, planted: int, seed: int = 0) -> list[tuple[int, int]]:
    """Write the dataset; return the (source line, copy line) of every planted near-duplicate
    (a copy may land before its source)."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    base = [(sentence(rng, vocab, 8, 25), " ".join(sentence(rng, vocab, 8, 20) for _ in range(rng.randint(2, 5))))
            for _ in range(rows - planted)]
    order: list[tuple[str, str, int | None]] = [(u, a, None) for u, a in base]
    for n in range(planted):
        src = rng.randrange(len(base))
        u, a = base[src]
        kind = EDITS[n % len(EDITS)]
        copy = (u, edit(a, kind, rng, vocab)) if rng.random() < 0.7 else (edit(u, kind, rng, vocab), a)
        order.insert(rng.randrange(src + 1, len(order) + 1), (*copy, src))
    line_of_base: dict[int, int] = {}
    pairs: list[tuple[int, int]] = []
    with path.open("w", encoding="utf-8") as fh:
        for line, (u, a, src) in enumerate(order, start=1):
            fh.write(json.dumps({"messages": [{"role": "user", "content": u},
                                              {"role": "assistant", "content": a}]}) + "\n")
            if src is None:
                line_of_base[len(line_of_base)] = line
            else:
                pairs.append((src, line))
    return [(line_of_base[src], line) for src, line in pairs]


def pin_two_cores() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 2:
        os.sched_setaffinity(0, cpus[:2])


def cli_seconds(data: Path) -> tuple[float, dict]:
    exe = str(Path(sys.executable).parent / "tunesmith")
    started = time.perf_counter()
    out = subprocess.run([exe, "audit", str(data), "--json", "--fail-on", "never"], capture_output=True, text=True,
                         check=True)
    return time.perf_counter() - started, json.loads(out.stdout)


def api_run(data: Path, tokenizer: Path | None) -> tuple[float, object]:
    from tunesmith.config import config_from_dict
    from tunesmith.audit import run

    own = tokenizer is not None and (tokenizer / "chat_template.jinja").exists()  # a real model's folder
    cfg = config_from_dict({"base_model": str(tokenizer or "(none)"), "datasets": [{"path": str(data)}],
                            "chat_template": "chatml" if tokenizer and not own else "tokenizer_default",
                            "val_set_size": 0})
    started = time.perf_counter()
    report = run(cfg, tokenize=tokenizer is not None)
    return time.perf_counter() - started, report


def token_audit(data: Path, tokenizer: Path) -> None:
    """Child process: the token audit once; prints its time, step times and a digest of the report."""
    seconds, report = api_run(data, tokenizer)
    stats = {k: v for k, v in report.stats.items() if k != "seconds"}
    digest = hashlib.sha256(json.dumps([[f.__dict__ for f in report.findings], stats], sort_keys=True,
                                       default=str).encode()).hexdigest()[:16]
    steps = report.stats["seconds"]
    print(json.dumps({"seconds": seconds, "token_lengths": steps["token_lengths"],
                      "missing_eos": steps.get("missing_eos", 0), "digest": digest}))


def compare(data: Path, tokenizer: Path, rev: str, tmp: Path) -> None:
    """The token audit with the source at ``rev`` and with the current source, one process each."""
    base = tmp / "baseline"
    base.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
    runs = {}
    for name, src in (("baseline", base / "src"), ("current", ROOT / "src")):
        env = {**os.environ, "PYTHONPATH": str(src)}
        out = subprocess.run([sys.executable, __file__, "--token-audit", str(data), str(tokenizer)], env=env,
                             capture_output=True, text=True, check=True)
        runs[name] = json.loads(out.stdout.strip().splitlines()[-1])
        r = runs[name]
        print(f"{name} ({rev if name == 'baseline' else 'working tree'}): {r['seconds']:.1f} s "
              f"(token lengths {r['token_lengths']:.1f} s, missing_eos {r['missing_eos']:.1f} s)")
    same = runs["baseline"]["digest"] == runs["current"]["digest"]
    print(f"with a tokenizer, current vs {rev}: {runs['baseline']['seconds'] / runs['current']['seconds']:.2f}x "
          f"faster; same findings and statistics: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--planted", type=int, default=2_000)
    parser.add_argument("--tokenizer", action="store_true", help="also run the token checks (tiny tokenizer)")
    parser.add_argument("--baseline", metavar="REV", help="with --tokenizer: also time the source at git REV")
    parser.add_argument("--tokenizer-dir", type=Path, metavar="DIR",
                        help="run the token checks with the tokenizer in DIR (its own chat template, if any)")
    parser.add_argument("--token-audit", nargs=2, type=Path, help=argparse.SUPPRESS)  # child of --baseline
    args = parser.parse_args()
    pin_two_cores()
    if args.token_audit:
        token_audit(*args.token_audit)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "chat.jsonl"
        started = time.perf_counter()
        pairs = generate(data, args.rows, args.planted)
        print(f"generated {args.rows} rows ({args.planted} planted near-duplicates) in "
              f"{time.perf_counter() - started:.1f} s; {data.stat().st_size / 1e6:.0f} MB")
        cli_s, cli_report = cli_seconds(data)
        checks = ", ".join(f"{f['check']} {f['count']}" for f in cli_report["findings"])
        print(f"tunesmith audit DATA --json: {cli_s:.1f} s end to end; findings: {checks}")
        api_s, report = api_run(data, None)
        flagged = set(report.by_check()["near_duplicate"].locations) if "near_duplicate" in report.by_check() else set()
        later = {f"{data}:{max(pair)}" for pair in pairs}  # the audit flags the later row of a pair
        hits = len(later & flagged)
        print(f"audit.run (API): {api_s:.1f} s; near-duplicate recall {hits / len(pairs):.4f} "
              f"({hits}/{len(pairs)}), flagged but not planted: {len(flagged - later)}")
        slow = sorted(report.stats["seconds"].items(), key=lambda kv: -kv[1])[:6]
        print("slowest steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in slow))
        if args.tokenizer_dir:
            tok_s, tok_report = api_run(data, args.tokenizer_dir)
            steps = tok_report.stats["seconds"]
            lengths = tok_report.stats["token_lengths"]["train"]
            print(f"with the tokenizer in {args.tokenizer_dir}: {tok_s:.1f} s (token lengths "
                  f"{steps['token_lengths']:.1f} s, missing_eos {steps.get('missing_eos', 0):.1f} s; "
                  f"{lengths['total']:,} tokens, p50 {lengths['p50']})")
        if args.tokenizer:
            from tiny import build_tokenizer
            from tunesmith.tokenize.tokenizer import template_text

            build_tokenizer(Path(tmp) / "tok", template_text("chatml"), ["<|im_start|>", "<|im_end|>"])
            tok_s, tok_report = api_run(data, Path(tmp) / "tok")
            steps = tok_report.stats["seconds"]
            print(f"with a tokenizer: {tok_s:.1f} s (token lengths {steps['token_lengths']:.1f} s, "
                  f"missing_eos {steps.get('missing_eos', 0):.1f} s)")
            if args.baseline:
                compare(data, Path(tmp) / "tok", args.baseline, Path(tmp))


if __name__ == "__main__":
    main()

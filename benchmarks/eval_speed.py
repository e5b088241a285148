"""Evaluation generation speed: the shared-prefix prefill against plain left-padded batches, same run.

    .venv/bin/python benchmarks/eval_speed.py --model outputs/quickstart/merged \
        --generations outputs/quickstart/eval/generations_tuned.jsonl \
        --system-prompt "You are the plant assistant." [--reps 3] [--threads N]

Replays the prompts a quickstart (or any `evaluate`) run generated for (`generations_*.jsonl`:
each row's task, prompt and reply length), with each task's `max_new_tokens` taken as its longest
recorded reply + 1 token and the run's system prompt (the quickstart's: its `quickstart.yaml`), through `tunesmith.infer.generate_details` with `share_prefix` off and
on, interleaved, greedy. Prints seconds per repetition, the ratio (plain / shared) with min-max,
and whether every reply is identical between the two paths.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path


def _requests(path: Path) -> dict[str, tuple[list[list[dict]], int]]:
    """Per task: the conversations and the max_new_tokens that covers every recorded reply."""
    from tunesmith.data.records import Message

    convs: dict[str, list] = defaultdict(list)
    longest: dict[str, int] = defaultdict(int)
    for line in path.read_text().splitlines():
        row = json.loads(line)
        convs[row["task"]].append([Message("user", row["prompt"])])
        longest[row["task"]] = max(longest[row["task"]], int(row.get("tokens") or 0))
    return {task: (convs[task], longest[task] + 1) for task in convs}


def _run(loaded, requests, share: bool, batch_size: int, system: str | None) -> tuple[float, list]:
    from tunesmith import infer

    t0 = time.perf_counter()
    replies = []
    for conversations, max_new in requests.values():
        replies += infer.generate_details(loaded.model, loaded.tokenizer, conversations, eos_ids=loaded.eos_ids,
                                          max_new_tokens=max_new, batch_size=batch_size, share_prefix=share,
                                          system_prompt=system)
    return time.perf_counter() - t0, replies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--generations", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--system-prompt", default=None, help="the evaluated run's system prompt")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    import torch

    from tunesmith import infer

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = infer.load(args.model)
    requests = _requests(args.generations)
    rows = sum(len(c) for c, _ in requests.values())
    times: dict[bool, list[float]] = {False: [], True: []}
    outputs: dict[bool, list] = {}
    for rep in range(args.reps):
        for share in (False, True):
            seconds, outputs[share] = _run(loaded, requests, share, args.batch_size, args.system_prompt)
            times[share].append(seconds)
            print(f"rep {rep + 1} share_prefix={share!s:5s} {seconds:6.1f} s", flush=True)
    ratios = [p / s for p, s in zip(times[False], times[True])]
    same = sum(a == b for a, b in zip(outputs[False], outputs[True]))
    print(f"{rows} prompts, {len(requests)} tasks; plain {statistics.median(times[False]):.1f} s, "
          f"shared prefix {statistics.median(times[True]):.1f} s (medians)")
    print(f"speed-up (plain / shared): {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})")
    print(f"identical replies: {same} of {rows}")


if __name__ == "__main__":
    main()

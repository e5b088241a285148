"""The pretraining corpus for the embedded base model, written by the project.

Plain-prose documents about the same domain as the demo tasks (station calculations worked
out in sentences, support tickets with their category, spec sheets with facts read out),
plus a few generic chat turns so the base knows its chat layout. The base therefore knows
the vocabulary and the arithmetic, but has never seen the tasks' request/answer contract
(JSON replies, label-only replies, the abstention phrase): that is what fine-tuning teaches.
Only training-pool examples are used (see ``tasks.held_out``).
"""

from __future__ import annotations

import random

from tunesmith.quickstart import tasks


def planning_doc(rng: random.Random, example: tasks.Example) -> str:
    plan = tasks.Plan(**dict(example.facts))
    ans = plan.answer()
    shift = tasks.shift_text(rng, plan.shifts, plan.hours)
    verdict = "is a bottleneck" if ans["bottleneck"] else "is not a bottleneck"
    return (
        f"Station note for {plan.station}. Demand is {plan.demand} {plan.parts} per day on {shift}, "
        f"so the available time is {plan.available} seconds. The takt time is {plan.available} / {plan.demand} "
        f"= {ans['takt_time_sec']} seconds. One {plan.part} takes {plan.cycle} seconds. "
        f"Machines needed: {plan.cycle} / {ans['takt_time_sec']} rounded up = {ans['machines_required']}. "
        f"Utilization is {ans['utilization_pct']} percent, so {plan.station} {verdict}."
        + (f"\nLogged record:\n{tasks.answer_json(ans)}" if rng.random() < 0.5 else "")
    )


def ticket_doc(rng: random.Random, example: tasks.Example) -> str:
    text = example.user.removeprefix("Ticket: ")
    lead = rng.choice(["A customer wrote", "Support log", "New message from a customer", "Inbox"])
    return f'{lead}: "{text}"\nCategory:\n{example.answer}\nThe support team filed it as a {example.answer} issue.'


def qa_doc(rng: random.Random, example: tasks.Example) -> str:
    facts = dict(example.facts)
    machine, kind, values, missing = facts["machine"], facts["kind"], dict(facts["values"]), facts["missing"]
    fields = tasks.catalogue()["qa"]["fields"]
    said = [f"The {fields[name]['label'].lower()} of the {machine} is {value}." for name, value in values.items()]
    rng.shuffle(said)
    gap = fields[rng.choice(missing)]["label"].lower()
    asked = rng.choice(list(values))
    question = rng.choice(fields[asked]["questions"]["train"])
    return (f"{tasks.sheet_text(machine, kind, values)}\n\n{' '.join(said)} "
            f"The sheet does not list the {gap}.\n{question}\n{values[asked]}")


def chat_doc(rng: random.Random, turns: list[list[str]]) -> list[dict[str, str]]:
    """A short generic conversation (messages) drawn from the catalogue's chat turns."""
    messages: list[dict[str, str]] = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": "You are a helpful assistant."})
    for question, answer in rng.sample(turns, rng.randint(1, 3)):
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


def documents(counts: dict[str, int], seed: int) -> list[str | list[dict[str, str]]]:
    """Documents per kind (``planning``, ``tickets``, ``qa``, ``chat``), shuffled deterministically.

    Chat documents are conversations (messages), for the caller to render with the base's chat
    template once its tokenizer exists; the others are text.
    """
    rng = random.Random(f"corpus:{seed}")
    writers = {"planning": planning_doc, "tickets": ticket_doc, "qa": qa_doc}
    docs: list[str | list[dict[str, str]]] = []
    for kind, writer in writers.items():
        for example in tasks.draw(kind, counts.get(kind, 0), seed + 1, "train", distinct=False):
            docs.append(writer(rng, example))
    turns = tasks.catalogue()["chat"]
    docs += [chat_doc(rng, turns) for _ in range(counts.get("chat", 0))]
    rng.shuffle(docs)
    return docs

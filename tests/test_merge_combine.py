"""Merging several fine-tunes: the method table, exact arithmetic, refusals before any work, the comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunesmith import merge
from tunesmith.config import config_from_dict
from tunesmith.config.loader import dump_yaml
from tunesmith.errors import TunesmithError
from tunesmith.merge.compare import MERGED, Comparison, TaskRow
from tunesmith.tokenize.tokenizer import template_text

from conftest import run_cli
from tiny import build_model, build_tokenizer

IM = ["<|im_start|>", "<|im_end|>"]
SYSTEM = "Answer with one word."
WORDS = "the of and to in is was for on that with as by at from it his an were are which this be".split()


def rows(kind: str, answer: str, n: int, offset: int = 0) -> list[dict]:
    def words(i: int) -> str:
        return f"{WORDS[(i + offset) % len(WORDS)]} {WORDS[(3 * i + offset) % len(WORDS)]}"

    return [{"messages": [{"role": "user", "content": f"{kind} {words(i)}"}, {"role": "assistant", "content": answer}]}
            for i in range(n)]


def write_jsonl(path: Path, data: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    return path


def run_config(root: Path, base: Path, name: str, kind: str, answer: str, **over) -> dict:
    train = write_jsonl(root / f"data_{name}" / "train.jsonl", rows(kind, answer, 24))
    test = write_jsonl(root / f"data_{name}" / "test.jsonl", rows(kind, answer, 4, offset=5))
    return {"base_model": str(base), "chat_template": "chatml", "datasets": [{"path": str(train)}],
            "output_dir": str(root / name), "system_prompt": SYSTEM, "sequence_len": 64, "seed": 1,
            "eval_tasks": [{"name": kind, "path": str(test), "scorer": "label", "labels": ["red", "cat"],
                            "max_new_tokens": 3}], **over}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    tok = build_tokenizer(root, template_text("chatml"), IM, eos_token="<|im_end|>", pad_token="<pad>")
    build_model(root, tok)
    return root


def fake_run(root: Path, base: Path, name: str, *, kind: str = "color", answer: str = "red", scale: float = 0.05,
             seed: int = 0, adapter: bool = False, tokenizer=None, **over) -> Path:
    """A run directory as `tunesmith train` leaves it (config.yaml + model/), with perturbed weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.train.artifacts import save_result

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    if adapter:
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                 init_lora_weights=False))
    else:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * scale)
    raw = run_config(root, base, name, kind, answer, **over)
    info = {"base_model": str(base), "chat_template": raw["chat_template"], "system_prompt": raw["system_prompt"]}
    save_result(model, tokenizer or AutoTokenizer.from_pretrained(str(base)), root / name / "model", info)
    (root / name / "config.yaml").write_text(dump_yaml(config_from_dict(raw)))
    return root / name


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_method_table_names_exist_in_mergekit_and_peft():
    import inspect

    from mergekit.merge_methods import registry
    from peft.tuners.lora.model import LoraModel

    known = {m.spec.name: m for m in registry.registered_methods()}
    peft_source = inspect.getsource(LoraModel._check_add_weighted_adapter)
    assert set(merge.methods()) == {"linear", "slerp", "ties", "dare_ties", "dare_linear"}
    for m in merge.methods().values():
        assert m.mergekit in known, m
        assert m.adapters in (None, "cat", "deltas"), m
        assert m.adapters != "cat" or '"cat"' in peft_source
        if m.adapters == "deltas":  # the adapter route computes mergekit's definition of the method
            gta = known[m.mergekit]
            assert m.task_vectors == {"sparsify": gta.sparsification_method.value, "rescale": gta.default_rescale,
                                      "consensus": gta.consensus_method is not None,
                                      "normalize": gta.default_normalize}, m
    with pytest.raises(TunesmithError, match="did you mean 'ties'"):
        merge.method("tie")


def test_task_vector_arithmetic_by_hand():
    """Two task vectors, weights 0.5 each, worked out on paper."""
    from tunesmith.merge.deltas import combine

    d1, d2 = torch.tensor([[3.0, -1.0, 0.5, 2.0]]), torch.tensor([[-1.0, -2.0, 1.0, 0.1]])
    rule = {name: merge.method(name).task_vectors for name in ("ties", "dare_ties", "dare_linear")}
    # ties, density 0.5: keep [3, 0, 0, 2] and [-1, -2, 0, 0]; weighted sum [1, -1, 0, 1] elects [+, -, +, +];
    # the agreeing values averaged by their weights (nothing agrees in the third column: 0)
    assert combine([d1, d2], [0.5, 0.5], 0.5, rule["ties"]).tolist() == [[3.0, -2.0, 0.0, 2.0]]
    # unequal weights: [2.25, 0, 0, 1.5] and [-0.25, -0.5, 0, 0] elect [+, -, +, +]; each value / its own weight
    assert combine([d1, d2], [0.75, 0.25], 0.5, rule["ties"]).tolist() == [[3.0, -2.0, 0.0, 2.0]]
    # ties, density 1: [1.5, -0.5, .25, 1] + [-0.5, -1, .5, .05] elects [+, -, +, +]: -0.5 of the second vector
    # disagrees in the first column; the agreeing ones averaged by their weights
    assert torch.allclose(combine([d1, d2], [0.5, 0.5], 1.0, rule["ties"]), torch.tensor([[3.0, -1.5, 0.75, 1.05]]))
    # dare_ties, density 1 (nothing dropped): the agreeing weighted values summed, not averaged (as in mergekit)
    assert torch.allclose(combine([d1, d2], [0.5, 0.5], 1.0, rule["dare_ties"]),
                          torch.tensor([[1.5, -1.5, 0.75, 1.05]]))
    # dare_linear, density 1: the weighted sum of the task vectors
    assert torch.allclose(combine([d1, d2], [0.7, 0.3], 1.0, rule["dare_linear"]), 0.7 * d1 + 0.3 * d2)
    # DARE's drop keeps about `density` of the values, rescaled to the task vector's L1 norm
    torch.manual_seed(0)
    big = torch.randn(200, 200)
    dropped = combine([big, big], [0.5, 0.5], 0.3, rule["dare_linear"])
    assert 0.45 < float((dropped != 0).float().mean()) < 0.55  # two independent 30 % masks
    assert abs(float(dropped.abs().sum() / big.abs().sum()) - 1) < 0.1


def test_comparison_names_the_winner_and_what_the_merge_keeps():
    rows = [TaskRow("a", "color", "acc", {"a": 0.9, "b": 0.1, MERGED: 0.45}),
            TaskRow("b", "animal", "acc", {"a": 0.2, "b": 0.8, MERGED: 0.8}),
            TaskRow("b", "none", "acc", {"a": 0.0, "b": 0.0, MERGED: 0.0})]
    table = Comparison(["a", "b"], rows)
    assert [r.best(["a", "b"]) for r in rows] == ["a", "b", "a"]  # a tie goes to the first source
    assert rows[0].kept(["a", "b"]) == pytest.approx(0.5) and rows[1].kept(["a", "b"]) == pytest.approx(1.0)
    assert rows[2].kept(["a", "b"]) is None
    text = table.table()
    assert "a/color (acc)" in text and "50%" in text and "100%" in text and "n/a (best is 0)" in text
    assert table.to_dict()["tasks"][0]["best_source"] == "a"


def test_linear_merge_of_full_models_is_the_weighted_average(tmp_path, base):
    a = fake_run(tmp_path, base, "a", seed=1)
    b = fake_run(tmp_path, base, "b", kind="animal", answer="cat", seed=2)
    result = merge.combine(merge.CombineOptions((a, b), "linear", tmp_path / "m", weights=(3.0, 1.0)))
    wa, wb, wm = weights(a / "model"), weights(b / "model"), weights(tmp_path / "m")
    assert set(wm) == set(wa)
    assert max(float((wm[k] - (0.75 * wa[k] + 0.25 * wb[k])).abs().max()) for k in wa) < 1e-6  # normalised weights
    assert result.backend == "mergekit" and result.check is None
    # every model was scored on every source's tasks, and the report says so
    report = json.loads((tmp_path / "m" / "merge_report.json").read_text())
    assert [(t["source"], t["task"]) for t in report["comparison"]["tasks"]] == [("a", "color"), ("b", "animal")]
    assert set(report["comparison"]["tasks"][0]["scores"]) == {"a", "b", MERGED}
    assert (tmp_path / "m" / "eval" / "a" / "eval_merged.json").is_file()
    info = json.loads((tmp_path / "m" / "tunesmith_model.json").read_text())
    assert info["system_prompt"] == SYSTEM and info["base_model"] is None and info["merge_method"] == "linear"
    assert (tmp_path / "m" / "chat_template.jinja").read_text() == template_text("chatml")
    assert "merge_method: linear" in (tmp_path / "m" / "mergekit_config.yml").read_text()


def test_peft_linear_is_the_exact_weighted_sum_of_the_adapter_deltas(tmp_path, base):
    from tunesmith import infer

    a = fake_run(tmp_path, base, "a", adapter=True, seed=1)
    b = fake_run(tmp_path, base, "b", adapter=True, seed=2, eval_tasks=[])  # one task list keeps the test fast
    result = merge.combine(merge.CombineOptions((a, b), "linear", tmp_path / "m", weights=(0.7, 0.3)))
    assert result.backend == "peft" and result.check is not None and result.check.passed
    folded = {}
    for name in ("a", "b"):
        model = infer.load(tmp_path / name / "model", base_model=str(base)).model.merge_and_unload()
        folded[name] = {k: v.detach() for k, v in model.state_dict().items()}
    w0, wm = weights(base), weights(tmp_path / "m")
    for k in w0:
        expected = w0[k] + 0.7 * (folded["a"][k] - w0[k]) + 0.3 * (folded["b"][k] - w0[k])
        assert float((wm[k] - expected).abs().max()) < 1e-5, k


def test_dare_linear_at_density_1_on_adapters_is_linear(tmp_path, base):
    """PEFT's dare_linear combined the A and B factors separately, (Σ wB)(Σ wA): 95 % off the weighted sum of the
    task vectors at density 1 (nothing dropped), where it must equal linear."""
    a = fake_run(tmp_path, base, "a", adapter=True, seed=1)
    b = fake_run(tmp_path, base, "b", adapter=True, seed=2, eval_tasks=[])
    options = {"weights": (0.7, 0.3)}
    linear = merge.combine(merge.CombineOptions((a, b), "linear", tmp_path / "lin", **options))
    dare = merge.combine(merge.CombineOptions((a, b), "dare_linear", tmp_path / "dare", density=1.0, **options))
    assert dare.backend == "adapter-deltas" and dare.check.passed and linear.backend == "peft"
    w0, wl, wd = weights(base), weights(tmp_path / "lin"), weights(tmp_path / "dare")
    for k in w0:
        assert float((wd[k] - wl[k]).abs().max()) <= 1e-6 * max(1.0, float((wl[k] - w0[k]).abs().max())), k
    assert any(float((wl[k] - w0[k]).abs().max()) > 1e-3 for k in w0)  # the adapters did change the base


def test_ties_and_dare_ties_on_adapters_equal_mergekit_on_the_folded_models(tmp_path, base):
    """The adapter route computes the method itself (on each layer's delta), not PEFT's factor-wise version."""
    a = fake_run(tmp_path, base, "a", adapter=True, seed=1)
    b = fake_run(tmp_path, base, "b", adapter=True, seed=2, eval_tasks=[])
    w0 = weights(base)
    for name, density in (("ties", 0.7), ("dare_ties", 1.0)):  # dare_* drop at random: compared undropped
        run = {"weights": (0.6, 0.4), "density": density}
        own = merge.combine(merge.CombineOptions((a, b), name, tmp_path / name, **run))
        full = merge.combine(merge.CombineOptions((a, b), name, tmp_path / f"{name}_full", full_models=True, **run))
        assert own.backend == "adapter-deltas" and own.check.passed and full.backend == "mergekit"
        wo, wf = weights(tmp_path / name), weights(tmp_path / f"{name}_full")
        for k in w0:  # the same up to the fold's rounding (which can swap the order of two near-equal values)
            task = (wf[k] - w0[k]).norm()
            assert float((wo[k] - wf[k]).norm()) <= 1e-3 * max(float(task), 1e-6), (name, k)


def test_adapters_with_more_than_lora_deltas_are_refused_as_adapters(tmp_path, base):
    """DoRA's magnitudes, LoRA biases, whole trained modules: not in B·A, so neither route would merge them."""
    a = fake_run(tmp_path, base, "a", adapter=True, seed=1)
    b = fake_run(tmp_path, base, "b", adapter=True, seed=2, eval_tasks=[])
    config = b / "model" / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "use_dora": True}))
    for name in ("linear", "ties"):
        with pytest.raises(TunesmithError, match="'b': \\['use_dora'\\].*pass --full-models"):
            merge.prepare(merge.CombineOptions((a, b), name, tmp_path / "out"))
    plan, backend = merge.prepare(merge.CombineOptions((a, b), "ties", tmp_path / "out", full_models=True))
    assert backend == "mergekit"


def test_dare_on_adapters_is_seeded_and_slerp_goes_through_mergekit(tmp_path, base):
    a = fake_run(tmp_path, base, "a", adapter=True, seed=1)
    b = fake_run(tmp_path, base, "b", adapter=True, seed=2, eval_tasks=[])
    dare = merge.combine(merge.CombineOptions((a, b), "dare_ties", tmp_path / "dare", density=0.7))
    assert dare.backend == "adapter-deltas" and dare.check.passed and dare.params == {"density": 0.7}
    again = merge.combine(merge.CombineOptions((a, b), "dare_ties", tmp_path / "again", density=0.7))
    other = merge.combine(merge.CombineOptions((a, b), "dare_ties", tmp_path / "other", density=0.7, seed=7))
    w1, w2, w3 = weights(tmp_path / "dare"), weights(tmp_path / "again"), weights(tmp_path / "other")
    assert all(torch.equal(w1[k], w2[k]) for k in w1) and not all(torch.equal(w1[k], w3[k]) for k in w1)
    slerp = merge.combine(merge.CombineOptions((a, b), "slerp", tmp_path / "slerp", t=0.0))
    assert slerp.backend == "mergekit" and any("folded" in n for n in slerp.notes)
    assert not (tmp_path / "slerp" / ".work").exists()
    # t = 0 is the first model: the adapter folded into the base
    from tunesmith import infer

    first = infer.load(a / "model", base_model=str(base)).model.merge_and_unload().state_dict()
    ws = weights(tmp_path / "slerp")
    assert max(float((ws[k] - first[k]).abs().max()) for k in ws) < 1e-5


def test_refusals_happen_before_any_work(tmp_path, base):
    a = fake_run(tmp_path, base, "a", seed=1)
    b = fake_run(tmp_path, base, "b", seed=2)
    c = fake_run(tmp_path, base, "c", seed=3)

    def refused(match: str, *sources: Path, method: str = "linear", out: str = "out", **kw) -> None:
        with pytest.raises(TunesmithError, match=match):
            merge.prepare(merge.CombineOptions(tuple(sources), method, tmp_path / out, **kw))

    refused("slerp merges 2 models, got 3", a, b, c, method="slerp")
    refused("at least 2 models, got 1", a)
    refused("linear takes no density", a, b, density=0.5)
    refused(r"--t: must be in \[0, 1\]", a, b, method="slerp", t=1.5)
    refused("need 2 finite non-negative numbers", a, b, weights=(1.0,))
    refused("slerp interpolates", a, b, method="slerp", weights=(0.5, 0.5))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me")
    refused("already exists and is not empty; pass --overwrite", a, b, out="busy")
    assert (tmp_path / "busy" / "x").read_text() == "keep me"
    refused("is \\(or holds\\) a source", a, b, out="a")
    # a weight that is not a number: mergekit wrote an all-NaN model and exited 0
    refused("need 2 finite non-negative numbers", a, b, weights=(float("nan"), 1.0))
    (tmp_path / "notes.txt").write_text("x")
    refused("--out .*notes.txt: is a file; name a folder", a, b, out="notes.txt")  # was an internal error
    # the base the sources load on: --overwrite would have deleted it first
    refused(f"is \\(or holds\\) {base}, the base the sources load on", a, b, out=str(base), overwrite=True)
    assert (base / "config.json").is_file()


def test_out_dot_is_refused_before_any_work(tmp_path, base, monkeypatch):
    """--out . was 'internal error: ValueError: PosixPath('.') has an empty name', exit 70 (merge CONFIG and
    merge --method alike); the merge would replace the shell's current folder whole."""
    from tunesmith.config import load_config

    a = fake_run(tmp_path, base, "a", adapter=True, seed=1)
    b = fake_run(tmp_path, base, "b", seed=2)
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    with pytest.raises(TunesmithError, match="is \\(or holds\\) the current folder"):
        merge.prepare(merge.CombineOptions((a, b), "linear", Path("."), overwrite=True))
    with pytest.raises(TunesmithError, match="is \\(or holds\\) the current folder"):
        config = load_config(str(a / "config.yaml"))
        merge.run(config, merge.probe_prompts(config, 1), out_dir=Path(".."))
    assert list(here.iterdir()) == []
    monkeypatch.chdir(a)  # the more specific refusal first
    with pytest.raises(TunesmithError, match="is \\(or holds\\) a source"):
        merge.prepare(merge.CombineOptions((Path("."), b), "linear", Path("."), overwrite=True))
    proc = run_cli("merge", str(a), str(b), "--method", "linear", "--out", ".", cwd=here)
    assert proc.returncode == 1 and "the current folder" in proc.stderr and "internal error" not in proc.stderr


def test_different_architectures_tokenizers_templates_are_refused(tmp_path, base):
    from transformers import AutoTokenizer

    a = fake_run(tmp_path, base, "a", seed=1)
    qwen_base = tmp_path / "qwen_base"
    build_model(qwen_base, AutoTokenizer.from_pretrained(str(base)), arch="qwen2")
    q = fake_run(tmp_path, qwen_base, "q")
    other_tok = build_tokenizer(tmp_path / "other_tok", template_text("chatml"), ["<|a|>", "<|b|>"],
                                eos_token="<|im_end|>", pad_token="<pad>")
    t = fake_run(tmp_path, base, "t", tokenizer=other_tok)
    zephyr = AutoTokenizer.from_pretrained(str(base))
    zephyr.chat_template = template_text("zephyr")
    z = fake_run(tmp_path, base, "z", tokenizer=zephyr)
    for source, match in ((q, "different architectures \\(model_type: llama vs qwen2"),
                          (t, "different tokenizers"), (z, "different chat templates")):
        with pytest.raises(TunesmithError, match=match):
            merge.prepare(merge.CombineOptions((a, source), "ties", tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_merge_nobody_can_evaluate_is_refused(tmp_path, base):
    a = fake_run(tmp_path, base, "a", eval_tasks=[])
    b = fake_run(tmp_path, base, "b", eval_tasks=[])
    with pytest.raises(TunesmithError, match="no source has eval_tasks"):
        merge.prepare(merge.CombineOptions((a, b), "linear", tmp_path / "out"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base) -> Path:
    """Two LoRA fine-tunes of one base, each taught one answer to its own kind of question."""
    from tunesmith import train

    root = tmp_path_factory.mktemp("trained")
    for name, kind, answer in (("run_a", "color", "red"), ("run_b", "animal", "cat")):
        raw = run_config(root, base, name, kind, answer, micro_batch_size=8, max_steps=30, learning_rate=1e-2,
                         bf16=False, lora_dropout=0.0, lora_r=8, audit={"fail_on": "never"})
        train.run(config_from_dict(raw), quiet=True, say=lambda s: None)
    return root


@pytest.mark.slow
def test_cli_merge_scores_the_merge_against_each_source(trained):
    proc = run_cli("merge", "run_a", "run_b", "--method", "ties", "--density", "0.8", "--out", "merged",
                   cwd=trained)
    assert proc.returncode == 0, proc.stderr
    assert "ties via adapter-deltas" in proc.stdout and "fold check" in proc.stdout and "passed" in proc.stdout
    assert "run_a/color (macro_f1)" in proc.stdout and "best source" in proc.stdout
    report = json.loads((trained / "merged" / "merge_report.json").read_text())
    tasks = {t["task"]: t for t in report["comparison"]["tasks"]}
    # each fine-tune wins the task it was taught, which the other one never learned
    assert tasks["color"]["best_source"] == "run_a" and tasks["color"]["scores"]["run_a"] > 0
    assert tasks["animal"]["best_source"] == "run_b" and tasks["animal"]["scores"]["run_b"] > 0
    assert tasks["color"]["scores"]["run_b"] == 0 and tasks["animal"]["scores"]["run_a"] == 0
    again = run_cli("merge", "run_a", "run_b", "--method", "ties", "--out", "merged", cwd=trained)
    assert again.returncode == 1 and "--overwrite" in again.stderr and "Traceback" not in again.stderr


def test_a_merge_that_fails_its_check_is_never_where_export_and_chat_look(tmp_path, base):
    """LoRA on lm_head of a model with tied embeddings: the fold changes the embeddings too and the check fails.
    The failed merge used to stay in merged/, where `export` (comparing it with itself) and `chat` picked it up."""
    import shutil

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.config import load_config
    from tunesmith.train.artifacts import save_result

    run = fake_run(tmp_path, base, "run", adapter=True)
    shutil.rmtree(run / "model")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "lm_head"], init_lora_weights=False))
    save_result(model, AutoTokenizer.from_pretrained(str(base)), run / "model",
                {"base_model": str(base), "chat_template": "chatml", "system_prompt": None})
    config = load_config(str(run / "config.yaml"))
    (run / "merged").mkdir()
    (run / "merged" / "earlier.txt").write_text("an earlier merge")
    result = merge.run(config, merge.probe_prompts(config, 2))
    assert not result.passed and result.output_dir == run / "merged.failed"
    assert (run / "merged.failed" / "config.json").is_file()
    assert (run / "merged" / "earlier.txt").read_text() == "an earlier merge"  # what was there stays
    assert not list(run.glob(".merged.building-*"))


def test_a_blend_of_fine_tunes_of_different_bases_is_said(tmp_path, base):
    """slerp / linear of full models need no common base, so they were not refused, and said nothing."""
    import shutil

    shutil.copytree(base, tmp_path / "base2")
    a = fake_run(tmp_path, base, "a", seed=1)
    b = fake_run(tmp_path, tmp_path / "base2", "b", seed=2)
    plan, _ = merge.prepare(merge.CombineOptions((a, b), "slerp", tmp_path / "out"))
    assert any(n.startswith("the sources were fine-tuned from different bases") and "blends different models" in n
               for n in plan.notes), plan.notes
    same, _ = merge.prepare(merge.CombineOptions((a, fake_run(tmp_path, base, "c", seed=3)), "slerp", tmp_path / "o2"))
    assert not any("different bases" in n for n in same.notes)

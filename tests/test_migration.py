"""Axolotl and LLaMA-Factory configs: every key applied, noticed or refused; the source tool's
semantics and defaults; ``tunesmith import``; ``tunesmith config`` origins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunesmith.config import config_from_dict, load_config
from tunesmith.config import foreign
from tunesmith.config.migrate import detect
from tunesmith.data import ingest
from tunesmith.errors import ConfigError
from tunesmith.tokenize import builtin_templates
from tunesmith.config.defaults import resolve

from conftest import run_cli

MIGRATION = Path(__file__).parent / "fixtures" / "migration"
LF = MIGRATION / "llamafactory"
AX = MIGRATION / "axolotl"
FIXTURES = sorted([*LF.glob("*.yaml"), *AX.glob("*.y*ml")])


def load(path: Path, **kw):
    return load_config(path, **kw)


def notes_by_path(cfg) -> dict[str, list]:
    out: dict[str, list] = {}
    for note in cfg.notes:
        out.setdefault(note.path, []).append(note)
    return out


# ---------------------------------------------------------------------------------------------
# every key of every published-style file is handled: native, applied, noticed or empty


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_key_is_native_or_has_a_note(path, monkeypatch):
    monkeypatch.chdir(path.parent)  # Axolotl dataset paths are relative to the working directory
    cfg = load(path)
    raw = yaml.safe_load(path.read_text())
    notes = notes_by_path(cfg)
    handled_elsewhere = {"dataset", "dataset_dir", "eval_dataset"}  # LLaMA-Factory dataset_info.json names
    for key, value in raw.items():
        if key in type(cfg).model_fields and key not in notes:
            assert key in cfg.model_fields_set, f"{path.name}: native key {key} lost"
            continue
        assert key in notes or key in handled_elsewhere, f"{path.name}: {key}: {value!r} was dropped silently"
    for i, item in enumerate(raw.get("datasets") or []):
        for key in item:
            path_key = f"datasets[{i}].{key}"
            native = key in type(cfg.datasets[0]).model_fields
            assert native or path_key in notes, f"{path.name}: {path_key} was dropped silently"
    result = ingest(list(cfg.datasets), method=cfg.method)
    assert result.records and not result.errors


def test_tool_is_detected_from_its_own_keys():
    assert detect(yaml.safe_load((LF / "llama3_lora_sft.yaml").read_text())) == "llamafactory"
    assert detect(yaml.safe_load((AX / "lora-1b.yml").read_text())) == "axolotl"
    native = {"base_model": "m", "datasets": ["d.jsonl"], "adapter": "none", "evals_per_epoch": 2}
    assert detect(native) == "tunesmith"
    with pytest.raises(ConfigError, match=r"fit more than one tool: Axolotl \(strict\); LLaMA-Factory \(stage\)"):
        config_from_dict({**native, "strict": False, "stage": "sft"})
    forced = config_from_dict({"base_model": "m", "datasets": ["d.jsonl"]}, tool="axolotl")
    assert forced.source_tool == "axolotl" and forced.adapter == "none"


# ---------------------------------------------------------------------------------------------
# LLaMA-Factory: values as LLaMA-Factory would use them


def test_llamafactory_lora_sft_resolves_like_llamafactory():
    cfg = load(LF / "llama3_lora_sft.yaml")
    assert (cfg.source_tool, cfg.method, cfg.adapter, cfg.chat_template) == ("llamafactory", "sft", "lora", "llama3")
    assert (cfg.lora_r, cfg.lora_dropout, cfg.lora_target_modules) == (8, 0.0, "all-linear")
    assert resolve(cfg, 100)["lora_alpha"] == 16  # LLaMA-Factory: lora_alpha defaults to 2 x lora_rank
    assert [Path(d.path).name for d in cfg.datasets] == ["identity.json", "alpaca_demo.json"]
    assert [d.max_samples for d in cfg.datasets] == [10, 10]  # max_samples: per dataset
    assert (cfg.sequence_len, cfg.micro_batch_size, cfg.num_epochs, cfg.learning_rate) == (256, 2, 2.0, 1e-3)
    assert (cfg.lr_scheduler, cfg.warmup_ratio, cfg.bf16, cfg.val_set_size) == ("cosine", 0.1, True, 0.1)
    assert (cfg.overwrite_cache, cfg.overwrite_output_dir, cfg.save_only_model) == (True, True, False)
    assert cfg.gradient_checkpointing is True and cfg.max_grad_norm == 1.0  # LLaMA-Factory / transformers defaults
    assert cfg.origin("lora_dropout") == "LLaMA-Factory default: lora_dropout defaults to 0"
    assert cfg.origin("sequence_len") == "from cutoff_len: 256 (LLaMA-Factory)"
    notes = notes_by_path(cfg)
    for key in ("trust_remote_code", "do_train", "preprocessing_num_workers", "plot_loss",
                "dataloader_num_workers", "per_device_eval_batch_size", "eval_strategy"):
        assert notes[key][0].kind == "ignored", key
    assert notes["ddp_timeout"][0].kind == "applied" and cfg.distributed.timeout_s == 180000000
    assert not cfg.distributed.launches  # a timeout alone: still one process
    assert notes["resume_from_checkpoint"][0].kind == "empty"


def test_llamafactory_max_samples_reads_the_first_rows():
    cfg = load(LF / "llama3_lora_sft.yaml")
    counts = [len(ingest([spec], method="sft").records) for spec in cfg.datasets]
    assert counts == [4, 10]  # identity has 4 rows, alpaca_demo 12 cut to 10


def test_llamafactory_full_sft_and_its_not_applicable_keys():
    cfg = load(LF / "qwen3_full_sft.yaml")
    assert (cfg.adapter, cfg.chat_template, cfg.attn_implementation) == ("none", "chatml", "flash_attention_2")
    assert (cfg.report_to, cfg.tracking.run_name, cfg.save_only_model) == ("wandb", "qwen3-full-sft", True)
    assert (cfg.weight_decay, cfg.max_grad_norm, cfg.gradient_checkpointing) == (0.03, 1e-3, True)
    assert cfg.lora_r is None  # LoRA defaults do not apply to full fine-tuning
    notes = notes_by_path(cfg)
    assert notes["deepspeed"][0].kind == "applied"  # LLaMA-Factory's example file, named: ZeRO-3
    assert (cfg.distributed.backend, cfg.distributed.stage, cfg.distributed.plan_sharding) == ("deepspeed", 3, "zero3")
    assert notes["enable_liger_kernel"][0].kind == "ignored" and notes["max_samples"][0].kind == "empty"


def test_llamafactory_one_module_name_is_a_list_of_one(tmp_path):
    """LLaMA-Factory reads lora_target / additional_target as comma lists; one name alone was refused."""
    text = (LF / "qwen3_lora_sft_otfq.yaml").read_text()
    lines = [line for line in text.splitlines() if not line.startswith(("lora_target:", "additional_target:"))]
    lines = [f"dataset_dir: {LF / 'data'}" if line.startswith("dataset_dir:") else line for line in lines]
    path = tmp_path / "one.yaml"
    path.write_text("\n".join([*lines, "lora_target: q_proj", "additional_target: embed_tokens", ""]))
    cfg = load(path)
    assert (cfg.lora_target_modules, cfg.modules_to_save) == (["q_proj"], ["embed_tokens"])


@pytest.mark.parametrize(("entry", "message"), [
    ({"file_name": "a.json", "columns": {"prompt": "instruction", "response": "output", "images": "images"}},
     r"'mllm' \(.*dataset_info.json\) has images \(columns.images\): tunesmith trains text models only"),
    ({"file_name": "a.json", "num_samples": 10},
     r"'mllm' \(.*dataset_info.json\) sets num_samples \(10\), which LLaMA-Factory draws at random"),
])
def test_llamafactory_dataset_info_entries_tunesmith_cannot_honour_are_refused(tmp_path, entry, message):
    """A multimodal entry would train its <image> placeholders as text; num_samples was ignored (every row read)."""
    (tmp_path / "a.json").write_text(json.dumps([{"instruction": "hi <image>", "output": "a cat", "images": ["x.png"]}]))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mllm": entry}))
    path = tmp_path / "lf.yaml"
    path.write_text(f"model_name_or_path: m\nstage: sft\nfinetuning_type: lora\ndataset: mllm\n"
                    f"dataset_dir: {tmp_path}\ntemplate: qwen\noutput_dir: {tmp_path / 'out'}\n")
    with pytest.raises(ConfigError, match=message):
        load(path)


def test_llamafactory_quantization_bit_4_is_qlora():
    cfg = load(LF / "qwen3_lora_sft_otfq.yaml")
    assert (cfg.adapter, cfg.quantization, cfg.chat_template) == ("qlora", "4bit", "qwen")
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]
    assert cfg.origin("quantization") == "from quantization_bit: 4 (LLaMA-Factory)"


@pytest.mark.parametrize("name,method,kind", [
    ("qwen3_lora_dpo.yaml", "dpo", "preference"), ("qwen3_lora_orpo.yaml", "orpo", "preference"),
    ("qwen3_lora_kto.yaml", "kto", "kto"), ("qwen3_lora_reward.yaml", "rm", "preference"),
    ("qwen3_lora_pretrain.yaml", "cpt", "text"),
])
def test_llamafactory_stages_map_to_methods(name, method, kind):
    cfg = load(LF / name)
    assert cfg.method == method
    assert {r.kind for r in ingest(list(cfg.datasets), method=cfg.method).records} == {kind}


def test_llamafactory_preference_values():
    dpo = load(LF / "qwen3_lora_dpo.yaml")
    assert (dpo.beta, dpo.loss_type, len(dpo.eval_datasets)) == (0.1, "sigmoid", 1)
    kto = load(LF / "qwen3_lora_kto.yaml")
    assert (kto.beta, kto.kto_desirable_weight, kto.kto_undesirable_weight) == (0.1, 1.0, 1.5)
    pt = load(LF / "qwen3_lora_pretrain.yaml")
    assert pt.chat_template == "tokenizer_default"  # no template: the model's own (LLaMA-Factory parses it)


def test_llamafactory_defaults_when_the_file_leaves_keys_out():
    cfg = load(LF / "llama3_lora_minimal.yaml")
    expected = {"adapter": "lora", "lora_r": 8, "lora_dropout": 0.0, "learning_rate": 5e-5, "num_epochs": 3,
                "lr_scheduler": "linear", "warmup_ratio": 0.0, "micro_batch_size": 8, "bf16": False,
                "max_grad_norm": 1.0, "gradient_checkpointing": True}
    for key, value in expected.items():
        assert getattr(cfg, key) == value, key
        assert cfg.origin(key).startswith("LLaMA-Factory default: "), key
    resolved = resolve(cfg, 12)
    assert resolved.sources["learning_rate"].startswith("LLaMA-Factory default")
    assert resolved["num_epochs"] == 3


# ---------------------------------------------------------------------------------------------
# Axolotl: values as Axolotl would use them


def test_axolotl_alpaca_datasets_render_with_the_alpaca_prompt():
    """Axolotl renders type alpaca with its Alpaca prompter, not the tokenizer's chat template."""
    cfg = load(AX / "lora-1b.yml")
    assert cfg.datasets[0].type == "alpaca" and cfg.chat_template == "alpaca"
    assert cfg.origin("chat_template") == "from datasets[0].type: alpaca (Axolotl)"


def test_axolotl_lora_1b_resolves_like_axolotl():
    cfg = load(AX / "lora-1b.yml")
    assert (cfg.source_tool, cfg.adapter, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == ("axolotl", "lora", 16, 32, 0.05)
    assert cfg.lora_target_modules == ["gate_proj", "down_proj", "up_proj", "q_proj", "v_proj", "k_proj", "o_proj"]
    assert (cfg.sequence_len, cfg.sample_packing, cfg.val_set_size, cfg.warmup_steps) == (256, True, 0.1, 10)
    assert (cfg.evals_per_epoch, cfg.saves_per_epoch, cfg.tf32, cfg.attn_implementation) == (4, 1, False, "flash_attention_2")
    assert cfg.special_tokens.pad_token == "<|end_of_text|>" and cfg.warmup_ratio is None
    resolved = resolve(cfg, 32)  # 32 rows / (2 x 2) = 8 steps per epoch: eval every 2, save every 8
    assert (resolved["eval_steps"], resolved["save_steps"]) == (2, 8)
    notes = notes_by_path(cfg)
    for key in ("strict", "dataset_prepared_path", "eval_sample_packing", "pad_to_sequence_len",
                "loss_watchdog_threshold", "load_in_8bit", "load_in_4bit", "group_by_length"):
        assert notes[key][0].kind == "ignored", key
    for key in ("lora_model_dir", "wandb_project", "fp16", "deepspeed", "fsdp", "debug"):
        assert notes[key][0].kind == "empty", key


def test_axolotl_without_adapter_is_full_fine_tuning():
    cfg = load(AX / "fft-8b.yaml")
    assert cfg.adapter == "none" and cfg.origin("adapter").startswith("Axolotl default: no adapter key")
    assert (cfg.learning_rate, cfg.num_epochs, cfg.optimizer) == (2e-5, 1, "paged_adamw_8bit")  # "2e-5" is a string in YAML
    assert notes_by_path(cfg)["gradient_checkpointing_kwargs"][0].kind == "ignored"


def test_axolotl_load_in_4bit_qlora_and_wandb_tracking():
    cfg = load(AX / "qlora.yml")
    assert (cfg.adapter, cfg.quantization, cfg.lora_target_modules) == ("qlora", "4bit", "all-linear")
    assert (cfg.report_to, cfg.tracking.project, cfg.tracking.entity, cfg.tracking.run_name) == (
        "wandb", "tunesmith-migration", "my-team", "qlora-run")


def test_axolotl_chat_template_dataset_fields_and_roles(monkeypatch):
    monkeypatch.chdir(AX)
    cfg = load(AX / "instruct-lora-8b.yml")
    spec = cfg.datasets[0]
    assert (cfg.quantization, cfg.adapter, cfg.chat_template) == ("8bit", "lora", "llama3")
    assert (spec.type, spec.field_messages, spec.role_tag, spec.content_tag) == ("auto", "conversation", "speaker", "text")
    assert spec.roles == {"user": ["human"], "assistant": ["bot"]}
    records = ingest([spec], method="sft").records
    assert [m.role for m in records[0].messages] == ["user", "assistant"]
    assert records[0].messages[1].content == "The answer is 0."


def test_axolotl_preference_methods():
    dpo = load(AX / "instruct-dpo-lora-8b.yml")
    assert (dpo.method, dpo.special_tokens.eos_token, dpo.special_tokens.pad_token) == ("dpo", "<|eot_id|>", "<|finetune_right_pad_id|>")
    kto = load(AX / "qlora-1b-kto.yaml")
    assert (kto.method, kto.beta, kto.kto_desirable_weight, kto.datasets[0].type, kto.adapter) == ("kto", 0.5, 0.2, "kto", "qlora")
    argilla = load(AX / "qlora-dpo.yml")
    assert (argilla.datasets[0].path, argilla.datasets[0].type, argilla.chat_template) == (
        "data/argilla_chat.json", "preference", "llama3")  # ds_type + data_files, llama3.* strategy
    orpo = load(AX / "orpo-lora.yml")
    assert (orpo.method, orpo.beta, orpo.num_epochs) == ("orpo", 0.1, 1)
    rm = load(AX / "reward-model.yml")
    assert (rm.method, rm.datasets[0].type, rm.adapter) == ("rm", "preference", "none")


def test_axolotl_preference_max_grad_norm_is_axolotls_default():
    """Axolotl leaves max_grad_norm to transformers / TRL (1.0); tunesmith's own preference default
    (0.5) applied instead, against "the source tool's defaults apply"."""
    cfg = config_from_dict({"base_model": "m", "datasets": [{"path": "d.jsonl", "type": "alpaca"}], "rl": "dpo"},
                           source="ax.yml")
    assert cfg.method == "dpo" and cfg.max_grad_norm == 1.0
    assert cfg.origin("max_grad_norm").startswith("Axolotl default: max_grad_norm unset")


def test_schedulers_that_need_arguments_and_max_steps_0_are_refused_when_the_config_loads():
    """They passed the config check and crashed training after the model and data had loaded (exit 70)."""
    base = {"base_model": "m", "datasets": [{"path": "d.jsonl"}]}
    for name in ("cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay", "reduce_lr_on_plateau"):
        with pytest.raises(ConfigError, match=rf"lr_scheduler: '{name}' cannot be used: it .* use cosine"):
            config_from_dict({**base, "lr_scheduler": name})
    with pytest.raises(ConfigError, match=r"max_steps: must be > 0, or -1 to train num_epochs"):
        config_from_dict({**base, "max_steps": 0})
    assert config_from_dict({**base, "lr_scheduler": "cosine_with_restarts"}).lr_scheduler == "cosine_with_restarts"


def test_axolotl_completion_is_cpt_and_defaults_apply():
    cfg = load(AX / "completion.yml")
    assert (cfg.method, cfg.datasets[0].type, cfg.datasets[0].field_text, cfg.adapter) == ("cpt", "text", "content", "none")
    assert (cfg.warmup_ratio, cfg.num_epochs) == (0.03, 1)
    assert cfg.origin("warmup_ratio").startswith("Axolotl default: warms up over 3% of the steps")


# ---------------------------------------------------------------------------------------------
# refusals, did-you-mean, tables


@pytest.mark.parametrize("raw,message", [
    ({"stage": "ppo"}, r"stage: ppo \(LLaMA-Factory: training stage\) - PPO needs a reward model"),
    ({"stage": "dpo", "pref_loss": "simpo"}, r"pref_loss: simpo .* - SimPO is not built in"),
    ({"template": "qwen3_nothnk"}, r"unknown template name 'qwen3_nothnk' \(did you mean 'qwen3_nothink'\?\)"),
    ({"template": "qwen2_vl"}, r"template: qwen2_vl .* a multimodal template; tunesmith trains text models"),
    ({"finetuning_type": "freeze"}, r"freeze tuning .* is not built in"),
    ({"quantization_bit": 3}, r"quantization_bit: 3 .* bitsandbytes to 4 or 8 bits"),
    ({"resume_from_checkpoint": "saves/x/checkpoint-10"}, r"tunesmith resumes only its own run"),
    # what tunesmith has instead, written as tunesmith takes it (the README documents both)
    ({"rope_scaling": "linear"}, r"rope_scaling: \{type: linear, factor: F\}, F = cutoff_len / the model's"),
    ({"mix_strategy": "interleave_under"}, r"mixes them by share: set datasets\[i\].weight .* or datasets\[i\].sample_ratio"),
])
def test_llamafactory_refusals_say_what_to_do_instead(raw, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"model_name_or_path": "m", "datasets": ["d.jsonl"], **raw}, source="lf.yaml")


@pytest.mark.parametrize("raw,message", [
    ({"rl": "grpo"}, r"rl: grpo .* GRPO needs generation"),
    ({"load_in_4bit": True}, r"load_in_4bit: a 4bit base can only be trained through a LoRA/DoRA adapter \(adapter is none\)"),
    ({"datasets": [{"path": "d.csv", "ds_type": "json", "type": "alpaca"}]}, r"json files end with .json or .jsonl, but d.csv"),
    ({"datasets": [{"path": "d.jsonl", "type": "llama3.ultra"}], "rl": "dpo"}, r"the ultra rows repeat the prompt"),
    ({"datasets": [{"path": "d.jsonl", "type": "my_strategy"}]}, r"'my_strategy' is an Axolotl prompt strategy"),
    ({"plugins": ["axolotl.integrations.liger.LigerPlugin"]}, r"Axolotl plugins are Axolotl code"),
    ({"rl": "kto", "micro_batch_size": 1}, r"micro_batch_size: method kto needs at least 2 \(got 1\)"),
    # Axolotl's own scheduler keys and schedules: each said to be Axolotl's, never "unknown key"
    ({"lr_scheduler": "one_cycle"}, r"lr_scheduler: one_cycle \(Axolotl: learning-rate schedule\) - Axolotl's own"),
    ({"lr_scheduler": "rex"}, r"Axolotl's own REX schedule is not built in"),
    ({"cosine_min_lr_ratio": 0.1}, r"cosine_min_lr_ratio: 0.1 \(Axolotl: cosine floor .*\) - tunesmith's cosine decays to 0"),
    ({"lr_quadratic_warmup": True}, r"tunesmith warms up linearly"),
    ({"embedding_lr_scale": 0.5}, r"tunesmith trains every parameter at learning_rate"),
])
def test_axolotl_refusals_say_what_to_do_instead(raw, message):
    base = {"base_model": "m", "datasets": [{"path": "d.jsonl", "type": "alpaca"}], "strict": False}
    with pytest.raises(ConfigError, match=message):
        config_from_dict({**base, **raw}, source="ax.yml")


def test_label_smoothing_is_refused_not_silently_mixed_into_a_completion_only_loss():
    """Seed failure row 51 (docs/failure-modes.md): label smoothing spreads loss onto every vocabulary
    token, which with completion-only labels trains the prompt-agnostic prior. tunesmith has no such key;
    another tool's non-zero factor is an error naming the key, 0 is only noted."""
    lf = {"model_name_or_path": "m", "datasets": ["d.jsonl"]}
    ax = {"base_model": "m", "datasets": [{"path": "d.jsonl", "type": "alpaca"}], "strict": False}
    for raw, source in ((lf, "lf.yaml"), (ax, "ax.yml")):
        with pytest.raises(ConfigError, match=r"label_smoothing_factor: 0.1 .*plain cross-entropy"):
            config_from_dict({**raw, "label_smoothing_factor": 0.1}, source=source)
        cfg = config_from_dict({**raw, "label_smoothing_factor": 0}, source=source)
        assert any("no label smoothing" in note.text for note in notes_by_path(cfg)["label_smoothing_factor"])


def test_foreign_keys_get_their_own_message_not_a_misleading_did_you_mean():
    native = {"base_model": "m", "datasets": ["d.jsonl"]}
    cfg = config_from_dict({**native, "deepspeed": "ds_z3.json", "ddp_timeout": 100})  # common names: any file
    notes = notes_by_path(cfg)
    assert notes["deepspeed"][0].kind == notes["ddp_timeout"][0].kind == "applied"
    assert (cfg.distributed.backend, cfg.distributed.stage, cfg.distributed.timeout_s) == ("deepspeed", 3, 100)
    lf = config_from_dict({**native, "max_samples": 5, "stage": "sft"})
    assert lf.datasets[0].max_samples == 5
    with pytest.raises(ConfigError, match=r"learning_rat: unknown key \(did you mean 'learning_rate'\?\)"):
        config_from_dict({**native, "learning_rat": 1e-4})
    # a typo of a key the Axolotl / LLaMA-Factory tables know: hinted at that key (was no hint, or a tunesmith key)
    for typo, meant in (("finetuning_typ", "finetuning_type"), ("eval_sample_packin", "eval_sample_packing"),
                        ("lora_target_linaer", "lora_target_linear"), ("flash_attenton", "flash_attention")):
        with pytest.raises(ConfigError, match=rf"{typo}: unknown key \(did you mean '{meant}'\?\)"):
            config_from_dict({**native, typo: True})


def test_every_mapped_template_exists():
    values = foreign.table("values")
    builtins = set(builtin_templates()) | {"tokenizer_default"}
    for table in ("llamafactory_templates", "axolotl_chat_templates"):
        for name, entry in values[table].items():
            assert "refuse" in entry or entry["chat_template"] in builtins, (table, name)
    assert set(values["strategy_templates"].values()) <= builtins


def test_table_entries_have_meaning_and_one_action():
    for name in ("common", *foreign.TOOLS):
        for level in ("top", "dataset"):
            for key, entry in foreign.table(name).get(level, {}).items():
                assert entry.get("meaning"), (name, key)
                actions = [a for a in foreign.ACTIONS if a in entry]
                assert len(actions) == 1 or (not actions and "values" in entry), (name, key, actions)


# ---------------------------------------------------------------------------------------------
# CLI: config shows origins, import writes an equivalent native config


def test_cli_config_shows_where_values_came_from():
    out = run_cli("config", str(LF / "llama3_lora_minimal.yaml"))
    assert out.returncode == 0, out.stderr
    assert "learning_rate: 5.0e-05  # LLaMA-Factory default: transformers' learning_rate default" in out.stdout
    assert "base_model: tiny-model  # from model_name_or_path: tiny-model (LLaMA-Factory)" in out.stdout
    assert "eval_batch_size: 32  # tunesmith default" in out.stdout


@pytest.mark.parametrize("path", [LF / "llama3_lora_sft.yaml", AX / "instruct-dpo-lora-8b.yml"], ids=lambda p: p.name)
def test_cli_import_writes_an_equivalent_native_config(path, tmp_path, monkeypatch):
    monkeypatch.chdir(path.parent)
    out_file = tmp_path / "tunesmith.yaml"
    out = run_cli("import", str(path), "--out", str(out_file), cwd=path.parent)
    assert out.returncode == 0, out.stderr
    text = out_file.read_text()
    original = load(path)
    again = load_config(out_file, tool="tunesmith")
    assert again.source_tool == "tunesmith"
    assert again.model_dump(exclude={"source_tool"}) == original.model_dump(exclude={"source_tool"})
    for note in original.notes:  # every translated, defaulted, ignored or empty key is commented
        assert note.path in text, note.path
    assert "# accepted, not applicable here:" in text


def test_cli_import_refusal_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: m\nstage: ppo\ndataset_dir: .\n")
    out = run_cli("import", str(bad))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"{bad}:2: stage: ppo" in out.stderr


# ---------------------------------------------------------------------------------------------
# end to end: a LLaMA-Factory-style and an Axolotl-style file train through the real CLI


LLAMA3 = (Path(__file__).resolve().parents[1] / "src/tunesmith/tokenize/templates/llama3.jinja").read_text()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Copies of the fixture folders next to a tiny Llama-3-style model named tiny-model."""
    import shutil

    from tiny import build_model, build_tokenizer

    root = tmp_path_factory.mktemp("migration")
    for folder in (LF, AX):
        shutil.copytree(folder, root / folder.name)
        model = root / folder.name / "tiny-model"
        tok = build_tokenizer(model, LLAMA3, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                              bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|end_of_text|>")
        build_model(model, tok)
    return root


@pytest.mark.slow
def test_llamafactory_style_config_trains_through_the_cli(workspace):
    folder = workspace / "llamafactory"
    out = run_cli("train", "llama3_lora_sft.yaml", "--set", "max_steps=3", "--quiet", cwd=folder, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "read as a LLaMA-Factory config" in out.stdout
    run_dir = folder / "saves" / "llama3" / "lora" / "sft"
    assert "  timeout_s: 180000000\n" in (run_dir / "config.yaml").read_text()  # ddp_timeout, translated
    assert "torch.distributed.run" not in out.stdout  # one process: nothing launched
    assert "learning_rate = 0.001  (config)" in out.stdout and "lora_dropout = 0.0  (LLaMA-Factory default" in out.stdout
    run_dir = folder / "saves" / "llama3" / "lora" / "sft"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 3
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (saved["source_tool"], saved["chat_template"], saved["lora_r"]) == ("llamafactory", "llama3", 8)
    assert (run_dir / "model" / "adapter_config.json").is_file()
    again = run_cli("train", "llama3_lora_sft.yaml", "--set", "max_steps=3", "--quiet", cwd=folder, timeout=900)
    assert again.returncode == 0 and "overwrite_output_dir: true" in again.stdout  # replaced, as LLaMA-Factory does


@pytest.mark.slow
def test_axolotl_style_config_trains_through_the_cli(workspace):
    folder = workspace / "axolotl"
    out = run_cli("train", "lora-1b.yml", "--set", "max_steps=3", "--quiet", cwd=folder, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "read as an Axolotl config" in out.stdout
    assert "flash_attention_2 needs the flash-attn package and a CUDA GPU" in out.stderr
    run_dir = folder / "outputs" / "lora-out"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 3
    assert record["resolved"]["warmup_steps"] == 10 and "eval_steps" in record["resolved"]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (saved["source_tool"], saved["adapter"], saved["special_tokens"]["pad_token"]) == (
        "axolotl", "lora", "<|end_of_text|>")
    tokenizer_config = json.loads((run_dir / "model" / "tokenizer_config.json").read_text())
    assert tokenizer_config["pad_token"] == "<|end_of_text|>"


def test_migrated_configs_keep_their_tools_no_validation_default():
    """Issue 15 item 6: tunesmith splits 5 % off by default; Axolotl and LLaMA-Factory do not, so a
    migrated config keeps its tool's behaviour (and says where the value came from)."""
    ax = config_from_dict({"base_model": "m", "datasets": [{"path": "d.jsonl", "type": "alpaca"}], "strict": False},
                          source="ax.yml")
    lf = config_from_dict({"model_name_or_path": "m", "datasets": ["d.jsonl"], "stage": "sft"}, source="lf.yaml")
    assert (ax.source_tool, ax.val_set_size, lf.source_tool, lf.val_set_size) == ("axolotl", 0, "llamafactory", 0)
    assert "no validation split" in ax.origin("val_set_size")
    assert config_from_dict({"base_model": "m", "datasets": ["d.jsonl"]}).val_set_size is None  # tunesmith's default

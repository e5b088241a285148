"""The one configuration schema (pydantic v2, frozen, unknown keys rejected).

Key names follow Axolotl; LLaMA-Factory and TRL names are accepted as aliases
(see ``aliases.py``). Defaults that depend on other values (learning rate per method,
LoRA dropout per dataset size, ...) are ``None`` here and resolved by the stage that
uses them, which records where each value came from.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from tunesmith.config.methods import method_spec, methods, unknown_method

DataType = Literal[
    "auto", "chat", "alpaca", "sharegpt", "preference", "kto", "text", "classification", "rag"
]
Adapter = Literal["lora", "dora", "qlora", "prompt", "prefix", "ia3", "none"]


def _with(flag: str) -> str:
    return ", ".join(m.name for m in methods().values() if getattr(m, flag))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DatasetSpec(_Strict):
    """One input dataset: where it is, its format, and how its fields are named."""

    path: str = Field(description="Local file or folder, save_to_disk folder, or hub dataset id")
    type: DataType = "auto"
    split: str = "train"
    name: str | None = Field(None, description="Hub dataset config name")
    data_files: list[str] | None = None
    text_unit: Literal["line", "paragraph", "file"] = Field(
        "line", description="How a .txt file is cut into documents"
    )
    max_samples: int | None = Field(None, gt=0, description="Read only the first N rows (LLaMA-Factory max_samples)")
    # field remapping (Axolotl names)
    field_messages: str | None = None
    field_instruction: str | None = None
    field_input: str | None = None
    field_output: str | None = None
    field_system: str | None = None
    field_history: str | None = None
    field_tools: str | None = None
    field_prompt: str | None = None
    field_chosen: str | None = None
    field_rejected: str | None = None
    field_label: str | None = None
    field_text: str | None = None
    field_context: str | None = None
    field_question: str | None = None
    field_answer: str | None = None
    field_weight: str | None = None
    # sharegpt tags (LLaMA-Factory names)
    role_tag: str = "from"
    content_tag: str = "value"
    user_tag: str = "human"
    assistant_tag: str = "gpt"
    system_tag: str = "system"
    function_tag: str = "function_call"
    observation_tag: str = "observation"
    roles: dict[Literal["system", "user", "assistant", "tool"], list[str]] | None = Field(
        None, description="Extra role names per role (Axolotl roles: {user: [human], assistant: [gpt]})"
    )
    # classification / rag
    labels: list[str] | None = Field(None, description="Allowed labels for classification data")
    instruction: str | None = Field(None, description="Prompt prefix for classification/rag rows")
    abstention: str = Field("Not found in context", description="Answer used when a RAG row has none")

    @field_validator("path")
    @classmethod
    def _path_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


class AuditConfig(_Strict):
    fail_on: Literal["error", "warning", "never"] = "error"
    near_duplicate_threshold: float = Field(0.85, gt=0, le=1)
    skip: list[str] = Field(default_factory=list, description="Audit checks not to run (by check name)")


class SpecialTokens(_Strict):
    """Special tokens to set on the tokenizer; each must already be in its vocabulary."""

    bos_token: str | None = None
    eos_token: str | None = None
    pad_token: str | None = None
    unk_token: str | None = None


class Tracking(_Strict):
    """Experiment-tracker settings for ``report_to`` (metrics.jsonl is always written)."""

    project: str | None = Field(None, description="Project name (WANDB_PROJECT / trackio project)")
    entity: str | None = Field(None, description="wandb entity (team or user)")
    run_name: str | None = Field(None, description="Run name shown by the tracker")


class EvalTaskSpec(DatasetSpec):
    """A held-out task: a dataset (read with the same options as a training one) whose last
    assistant turn is the gold answer, and how to score replies. ``labels`` is the label
    scorer's label set (default: the golds seen); ``abstention`` the grounded scorer's refusal."""

    name: str = Field(min_length=1)
    scorer: Literal["json", "label", "grounded"]
    max_new_tokens: int = Field(128, gt=0)
    json_schema: dict[str, Any] | None = Field(None, description="json scorer: the schema replies must follow")
    tolerance: dict[str, float] = Field(default_factory=dict, description="json scorer: absolute tolerance per numeric field")

    def dataset(self) -> DatasetSpec:
        """The task's file as a dataset spec (so it is read exactly as training reads it)."""
        return DatasetSpec(**self.model_dump(include=set(DatasetSpec.model_fields)))

    @model_validator(mode="after")
    def _scorer_needs(self) -> "EvalTaskSpec":
        if self.scorer == "json" and self.json_schema is None:
            raise ValueError(f"json_schema: the json scorer needs a JSON Schema (task {self.name!r})")
        if self.json_schema is not None:
            from jsonschema.exceptions import SchemaError
            from jsonschema.validators import validator_for

            try:
                validator_for(self.json_schema).check_schema(self.json_schema)
            except SchemaError as exc:
                raise ValueError(f"json_schema: not a valid JSON Schema: {exc.message}") from None
        return self


class Config(_Strict):
    """A tunesmith run: model, data, tokenization and training settings."""

    # model + method
    base_model: str
    method: str = "sft"
    adapter: Adapter = "lora"
    quantization: Literal["none", "4bit", "8bit"] | None = Field(
        None, description="Base weights for LoRA/DoRA: 4bit (nf4, = qlora) or 8bit (bitsandbytes); default from adapter"
    )
    attn_implementation: str | None = Field(None, description="eager | sdpa | flash_attention_2 | ... (default: model's)")
    special_tokens: SpecialTokens | None = None
    teacher_model: str | None = Field(None, description="distill: the teacher (must share the student's tokenizer)")
    ref_model: str | None = Field(None, description="dpo/kto: reference model (default: the frozen base)")
    source_tool: Literal["tunesmith", "axolotl", "llamafactory"] = Field(
        "tunesmith", description="The tool whose config conventions and defaults the file follows"
    )
    chat_template: str = "tokenizer_default"
    system_prompt: str | None = None
    # data
    datasets: list[DatasetSpec] = Field(min_length=1)
    eval_datasets: list[DatasetSpec] = Field(default_factory=list)
    test_datasets: list[DatasetSpec] = Field(default_factory=list)
    val_set_size: float = Field(0.0, ge=0)
    on_bad_rows: Literal["error", "skip"] = "error"
    # tokenization
    sequence_len: int = Field(2048, gt=0)
    sample_packing: bool = False
    train_on_inputs: bool = False
    train_on_turns: Literal["all", "last"] = "all"
    truncation: Literal["drop", "truncate_prompt", "error"] = "drop"
    stride: int = Field(0, ge=0, description="cpt: tokens of overlap between windows")
    min_window: int = Field(16, gt=0, description="cpt: drop tail windows shorter than this")
    # adapter
    lora_r: int | None = Field(None, gt=0)
    lora_alpha: float | None = Field(None, gt=0)
    lora_dropout: float | None = Field(None, ge=0, lt=1)
    lora_target_modules: list[str] | Literal["all-linear"] | None = Field(
        "all-linear", description="null: PEFT's per-architecture default targets"
    )
    modules_to_save: list[str] | None = None
    lora_model_dir: str | None = Field(None, description="Start from (and keep training) this LoRA adapter")
    num_virtual_tokens: int = Field(20, gt=0, description="prompt/prefix tuning length")
    # optimisation
    micro_batch_size: int = Field(1, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    num_epochs: float | None = Field(None, gt=0)
    max_steps: int = Field(-1, ge=-1)
    learning_rate: float | None = Field(None, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    warmup_steps: int | None = Field(None, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(None, gt=0)
    optimizer: str = "adamw_torch"
    bf16: Literal["auto", True, False] = "auto"
    tf32: bool | None = Field(None, description="TF32 matmuls on NVIDIA Ampere+ (ignored elsewhere)")
    gradient_checkpointing: bool | None = None
    padding_free: Literal["auto", True, False] = Field(
        "auto", description="SFT/cpt micro batches as one unpadded row, samples isolated (auto: where supported)")
    fused_loss: Literal["auto", True, False] = Field(
        "auto", description="LM head + loss only at trained positions, chunked (auto: where supported)")
    beta: float | None = Field(None, gt=0, description="dpo/kto/orpo beta, distill JSD interpolation (per method)")
    loss_type: str = Field("sigmoid", description="DPO loss type (TRL's names)")
    kto_desirable_weight: float = Field(1.0, gt=0)
    kto_undesirable_weight: float = Field(1.0, gt=0)
    # evaluation + checkpoints
    eval_steps: int | None = Field(None, gt=0)
    save_steps: int | None = Field(None, gt=0)
    evals_per_epoch: int | None = Field(None, gt=0)
    saves_per_epoch: int | None = Field(None, gt=0)
    save_only_model: bool = Field(False, description="Checkpoints without optimizer state (a resume restarts it)")
    save_total_limit: int | None = Field(2, gt=0)
    early_stopping_patience: int | None = Field(None, gt=0)
    logging_steps: int = Field(1, gt=0)
    report_to: Literal["none", "tensorboard", "mlflow", "wandb", "trackio"] = "none"
    tracking: Tracking = Field(default_factory=Tracking)
    # run
    output_dir: str = "./outputs/run"
    overwrite_output_dir: bool = Field(False, description="Replace an existing run in output_dir (as --overwrite)")
    overwrite_cache: bool = Field(False, description="Tokenize again instead of reusing the cache")
    seed: int = 42
    audit: AuditConfig = Field(default_factory=AuditConfig)
    # held-out evaluation
    eval_tasks: list[EvalTaskSpec] = Field(default_factory=list)
    eval_batch_size: int = Field(32, gt=0)

    _notes: tuple[Any, ...] = PrivateAttr(default=())
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in methods():
            raise ValueError(unknown_method(v))
        return v

    @model_validator(mode="before")
    @classmethod
    def _quantized_lora_is_qlora(cls, data: Any) -> Any:
        """LoRA on a 4-bit base is QLoRA (Axolotl ``load_in_4bit`` + ``adapter: lora``)."""
        if isinstance(data, dict) and data.get("quantization") == "4bit" and data.get("adapter", "lora") == "lora":
            data = {**data, "adapter": "qlora"}
        return data

    def origin(self, key: str) -> str | None:
        """Where ``key``'s value came from when it was not written natively (translated, tool default)."""
        return self._origins.get(key)

    @property
    def notes(self) -> tuple[Any, ...]:
        """What loading did with keys of another tool (``config.migrate.Note``)."""
        return self._notes

    @property
    def method_spec(self) -> Any:
        return method_spec(self.method)

    @model_validator(mode="after")
    def _check_methods(self) -> "Config":
        spec = method_spec(self.method)
        if spec.teacher and not self.teacher_model:
            raise ValueError(f"teacher_model: method {self.method} needs a teacher model (a folder or hub id)")
        if self.teacher_model and not spec.teacher:
            raise ValueError(f"teacher_model: method {self.method} has no teacher (only {_with('teacher')})")
        if self.micro_batch_size < spec.min_micro_batch_size:
            raise ValueError(
                f"micro_batch_size: method {self.method} needs at least {spec.min_micro_batch_size} "
                f"(got {self.micro_batch_size}): {spec.min_micro_batch_why}"
            )
        if self.ref_model and not spec.reference:
            raise ValueError(f"ref_model: method {self.method} has no reference model (only {_with('reference')})")
        quantized = self.quantization in ("4bit", "8bit")
        if quantized and self.adapter not in ("lora", "dora", "qlora"):
            raise ValueError(
                f"quantization: a {self.quantization} base can only be trained through a LoRA/DoRA adapter "
                f"(adapter is {self.adapter}); full fine-tuning needs the full-precision weights"
            )
        if self.adapter == "qlora" and self.quantization == "8bit":
            raise ValueError("quantization: adapter qlora is LoRA on a 4-bit base; 8bit needs adapter: lora")
        for a, b in (("warmup_steps", "warmup_ratio"), ("evals_per_epoch", "eval_steps"),
                     ("saves_per_epoch", "save_steps")):
            if getattr(self, a) is not None and getattr(self, b) is not None:
                raise ValueError(f"{a}: set either {a} or {b}, not both")
        return self

    @model_validator(mode="after")
    def _check_combinations(self) -> "Config":
        if self.val_set_size >= 1 and self.val_set_size != int(self.val_set_size):
            raise ValueError(
                f"val_set_size: a fraction must be < 1, a row count a whole number (got {self.val_set_size})"
            )
        names = [t.name for t in self.eval_tasks]
        if len(names) != len(set(names)):
            raise ValueError(f"eval_tasks: task names must be unique (got {names})")
        if self.stride and self.stride >= self.sequence_len:
            raise ValueError(f"stride: must be < sequence_len ({self.sequence_len}) (got {self.stride})")
        return self

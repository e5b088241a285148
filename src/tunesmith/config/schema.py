"""The one configuration schema (pydantic v2, frozen, unknown keys rejected).

Key names follow Axolotl; LLaMA-Factory and TRL names are accepted as aliases
(see ``aliases.py``). Defaults that depend on other values (learning rate per method,
LoRA dropout per dataset size, ...) are ``None`` here and resolved by the stage that
uses them, which records where each value came from.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, field_validator, model_validator

DataType = Literal[
    "auto", "chat", "alpaca", "sharegpt", "preference", "kto", "text", "classification", "rag"
]
Method = Literal["sft", "cpt", "dpo"]
Adapter = Literal["lora", "dora", "qlora", "prompt", "prefix", "ia3", "none"]


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
    method: Method = "sft"
    adapter: Adapter = "lora"
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
    lora_target_modules: list[str] | Literal["all-linear"] = "all-linear"
    peft_layers_to_transform: list[NonNegativeInt] | None = Field(
        None, min_length=1, description="LoRA/DoRA only on these decoder layers (indices); backward stops below the lowest"
    )
    modules_to_save: list[str] | None = None
    num_virtual_tokens: int = Field(20, gt=0, description="prompt/prefix tuning length")
    # optimisation
    micro_batch_size: int = Field(1, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    num_epochs: float | None = Field(None, gt=0)
    max_steps: int = Field(-1, ge=-1)
    learning_rate: float | None = Field(None, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(None, gt=0)
    optimizer: str = "adamw_torch"
    bf16: Literal["auto", True, False] = "auto"
    gradient_checkpointing: bool | None = None
    beta: float = Field(0.1, gt=0, description="DPO beta")
    loss_type: str = Field("sigmoid", description="DPO loss type (TRL's names)")
    # evaluation + checkpoints
    eval_steps: int | None = Field(None, gt=0)
    save_steps: int | None = Field(None, gt=0)
    save_total_limit: int | None = Field(2, gt=0)
    early_stopping_patience: int | None = Field(None, gt=0)
    logging_steps: int = Field(1, gt=0)
    report_to: Literal["none", "tensorboard", "mlflow", "wandb", "trackio"] = "none"
    # run
    output_dir: str = "./outputs/run"
    seed: int = 42
    audit: AuditConfig = Field(default_factory=AuditConfig)
    # held-out evaluation
    eval_tasks: list[EvalTaskSpec] = Field(default_factory=list)
    eval_batch_size: int = Field(32, gt=0)

    @model_validator(mode="after")
    def _check_combinations(self) -> "Config":
        if self.val_set_size >= 1 and self.val_set_size != int(self.val_set_size):
            raise ValueError(
                f"val_set_size: a fraction must be < 1, a row count a whole number (got {self.val_set_size})"
            )
        names = [t.name for t in self.eval_tasks]
        if len(names) != len(set(names)):
            raise ValueError(f"eval_tasks: task names must be unique (got {names})")
        if self.peft_layers_to_transform and self.lora_target_modules == "all-linear":
            raise ValueError("peft_layers_to_transform: needs lora_target_modules as a list of module names "
                             "(e.g. [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]); "
                             "PEFT cannot combine it with all-linear")
        if self.stride and self.stride >= self.sequence_len:
            raise ValueError(f"stride: must be < sequence_len ({self.sequence_len}) (got {self.stride})")
        return self

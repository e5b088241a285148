"""The one configuration schema (pydantic v2, frozen, unknown keys rejected).

Key names follow Axolotl; LLaMA-Factory and TRL names are accepted as aliases
(see ``aliases.py``). Defaults that depend on other values (learning rate per method,
LoRA dropout per dataset size, ...) are ``None`` here and resolved by the stage that
uses them, which records where each value came from.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, NonNegativeInt, PrivateAttr, Tag, field_validator, model_validator

from tunesmith.config import choices
from tunesmith.config.adapters import adapter_spec
from tunesmith.config.methods import method_spec, methods, unknown_method
from tunesmith.config.distributed import DistributedConfig
from tunesmith.config.strict import StrictModel

DataType = Literal[
    "auto", "chat", "alpaca", "sharegpt", "preference", "kto", "text", "classification", "rag"
]
Adapter = Literal["lora", "dora", "qlora", "prompt", "prefix", "ia3", "none"]


def _with(flag: str) -> str:
    return ", ".join(m.name for m in methods().values() if getattr(m, flag))


class _Strict(StrictModel):
    pass


class DatasetSpec(_Strict):
    """One input dataset: where it is, its format, and how its fields are named."""

    path: str = Field(description="Local file or folder, save_to_disk folder, or hub dataset id")
    type: DataType = "auto"
    split: str = "train"
    name: str | None = Field(None, description="Hub dataset config name")
    data_files: list[str] | None = None
    max_row_bytes: int = Field(
        8 * 1024 * 1024, ge=0, description="Rows larger than this (bytes as stored) are rejected as too large; 0: no limit"
    )
    text_unit: Literal["line", "paragraph", "file"] = Field(
        "line", description="How a .txt file is cut into documents"
    )
    max_samples: int | None = Field(None, gt=0, description="Read only the first N rows (LLaMA-Factory max_samples)")
    # dataset mixing (training datasets; data/mix.py): the share of each dataset in the training rows
    weight: float | None = Field(None, gt=0, description="Relative weight in the mix: share ~ (rows x weight)^(1/mix_temperature)")
    sample_ratio: float | None = Field(
        None, gt=0, description="Use this fraction of the dataset's rows (> 1 repeats rows); overrides weight")
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


class RopeScaling(_Strict):
    """RoPE scaling to train past the model's context window (``train/context.py``)."""

    type: Literal["linear", "dynamic", "yarn", "llama3"] = "linear"
    factor: float = Field(gt=1, description="context multiplier")


class Tracking(_Strict):
    """Experiment-tracker settings for ``report_to`` (metrics.jsonl is always written)."""

    project: str | None = Field(None, description="Project name (WANDB_PROJECT / trackio project)")
    entity: str | None = Field(None, description="wandb entity (team or user)")
    run_name: str | None = Field(None, description="Run name shown by the tracker")


ScorerName = Literal[
    "json", "label", "grounded", "exact_match", "token_f1", "contains", "regex", "numeric", "rouge_l", "bleu", "chrf",
    "judge",
]  # = the keys of tunesmith.evaluate.scorers.SCORERS (a test keeps them equal)


class HardwareConfig(_Strict):
    """The device a run targets; ``tunesmith plan`` and ``train``'s memory check size against it."""

    gpu: str | None = Field(None, description="GPU name from config/gpus.yaml (e.g. A100-80GB); none = this machine")
    gpus: int = Field(1, gt=0, description="Number of devices (data parallel)")
    sharding: Literal["none", "zero1", "zero2", "zero3", "fsdp"] = Field(
        "none", description="What is split across devices: none (DDP), zero1 optimizer, zero2 + gradients, zero3/fsdp + weights"
    )
    price_per_hour: float | None = Field(None, gt=0, description="Price of one GPU-hour, for the cost estimate")
    memory_check: Literal["error", "warn", "off"] = Field(
        "error", description="train: stop (error), warn, or skip when the memory estimate exceeds the device"
    )

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, v: str | None) -> str | None:
        from tunesmith.config.gpus import canonical_gpu, unknown_gpu_message

        if v is None:
            return v
        canon = canonical_gpu(v)
        if canon is None:
            raise ValueError(unknown_gpu_message(v))
        return canon

    @model_validator(mode="after")
    def _price_needs_gpu(self) -> "HardwareConfig":
        if self.price_per_hour is not None and self.gpu is None:
            raise ValueError("price_per_hour: a price needs a device (set hardware.gpu)")
        return self


class EvalTaskSpec(DatasetSpec):
    """A held-out task: a dataset (read with the same options as a training one) whose last
    assistant turn is the gold answer, and how to score replies. ``labels`` is the label
    scorer's label set (default: the golds seen); ``abstention`` the grounded scorer's refusal."""

    name: str = Field(min_length=1)
    scorer: ScorerName
    max_new_tokens: int = Field(128, gt=0)
    json_schema: dict[str, Any] | None = Field(None, description="json scorer: the schema replies must follow")
    tolerance: dict[str, float] = Field(default_factory=dict, description="json scorer: absolute tolerance per numeric field")
    pattern: str | None = Field(None, description="regex scorer: one pattern for every row (default: each gold is a pattern)")
    abs_tolerance: float = Field(0.0, ge=0, description="numeric scorer: allowed absolute difference")
    rel_tolerance: float = Field(0.0, ge=0, description="numeric scorer: allowed difference relative to the gold")
    field_category: str = Field("category", description="Row field holding a category for per-category scores")

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
        if self.pattern is not None:
            import re

            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern: not a valid regular expression: {exc} (got {self.pattern!r})") from None
        return self


class LmEvalOptions(_Strict):
    """lm-evaluation-harness tasks run on the model being evaluated (``pip install 'tunesmith[lm-eval]'``)."""

    tasks: list[str] = Field(min_length=1, description="lm-eval task names (or names defined under include_path)")
    include_path: str | None = Field(None, description="Folder of extra lm-eval task YAML files")
    num_fewshot: int | None = Field(None, ge=0)
    limit: float | None = Field(None, gt=0, description="Rows per task (a fraction < 1 or a count)")
    batch_size: int = Field(8, gt=0)


class LmEvalTaskSpec(_Strict):
    """An ``eval_tasks`` entry of the form ``- lm_eval: {tasks: [...]}``."""

    lm_eval: LmEvalOptions
    name: str = Field("lm_eval", min_length=1)


def _eval_task_kind(value: Any) -> str:
    return "lm_eval entry" if isinstance(value, dict) and "lm_eval" in value else "dataset entry"


EVAL_TASK_TAGS = ("lm_eval entry", "dataset entry")  # union tags: not key names (the loader drops them)
AnyEvalTask = Annotated[
    Union[Annotated[EvalTaskSpec, Tag("dataset entry")], Annotated[LmEvalTaskSpec, Tag("lm_eval entry")]],
    Discriminator(_eval_task_kind),
]


class JudgeConfig(_Strict):
    """An LLM judge behind any OpenAI-compatible endpoint (``/v1/chat/completions``)."""

    base_url: str = Field(min_length=1, description="e.g. http://localhost:8000/v1")
    model: str = Field(min_length=1)
    api_key_env: str | None = Field(None, description="Environment variable holding the API key (none: no key)")
    temperature: float = Field(0.0, ge=0, le=2)
    timeout: float = Field(60.0, gt=0, description="Seconds per request")
    max_retries: int = Field(2, ge=0, description="Retries per verdict after a failed or unparseable reply")
    backoff: float = Field(1.0, ge=0, description="Seconds before the first retry; doubles each retry")
    max_tokens: int = Field(512, gt=0)
    workers: int = Field(4, gt=0, description="Verdicts requested in parallel")
    max_consecutive_failures: int = Field(5, gt=0, description="Stop with an error after this many failed rows in a row")
    rubric: str | None = Field(None, description="Rubric YAML (default: the bundled one)")
    cache: str | None = Field(None, description="SQLite verdict cache (default: <output_dir>/eval/judge_cache.sqlite)")
    structured: Literal["auto"] | bool = Field(
        "auto", description="Ask for the verdict as OpenAI response_format json_schema (built from the rubric): "
                            "auto = ask, and if the endpoint answers HTTP 400/422 ask plainly from then on; "
                            "true = always ask (a refusal is an error); false = never ask")


class ProbeConfig(_Strict):
    """General-capability (forgetting) probes scored next to the eval tasks."""

    enabled: bool = True
    path: str | None = Field(None, description="Probe JSONL file (default: the bundled general set)")
    max_new_tokens: int = Field(48, gt=0)
    max_drop: float = Field(0.10, ge=0, le=1, description="Flag a category whose accuracy falls by more than this share")


class ContaminationConfig(_Strict):
    """Eval rows that also stand in the training data (exactly or nearly)."""

    check: bool = True
    action: Literal["exclude", "fail", "report"] = "exclude"
    threshold: float | None = Field(None, gt=0, le=1, description="MinHash Jaccard (default: audit.near_duplicate_threshold)")


class RubricCriterion(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str = Field(min_length=1)
    scale: tuple[int, int] = Field(description="[lowest, highest] score")

    @field_validator("scale")
    @classmethod
    def _ordered(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] >= v[1]:
            raise ValueError(f"must be [lowest, highest] with lowest < highest (got {list(v)})")
        return v


class RubricFlag(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str = Field(min_length=1)


class PairwisePrompt(_Strict):
    system: str = Field(min_length=1)
    template: str = Field(min_length=1, description="Jinja: prompt, reference, first, second")


class Rubric(_Strict):
    """A judge rubric (data, overridable with ``judge.rubric``): criteria with a scale, yes/no
    flags, and the prompts that ask for them."""

    name: str = Field(min_length=1)
    system: str = Field(min_length=1)
    template: str = Field(min_length=1, description="Jinja: prompt, reference, reply, criteria, flags")
    criteria: list[RubricCriterion] = Field(min_length=1)
    flags: list[RubricFlag] = Field(default_factory=list)
    pass_min: int = Field(4, description="A verdict passes when every criterion scores >= this and no flag is set")
    pairwise: PairwisePrompt


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
    val_set_size: float | None = Field(
        None, ge=0, description="Validation split off train when there is no eval data: fraction < 1 or row count; "
        "unset: 5 % (20..1,000 rows, from 200 training rows); 0: none")
    mix_temperature: float = Field(
        1.0, gt=0, description="Dataset mixing: share ~ (rows x weight)^(1/T); 1 = as weighted, large = uniform across datasets")
    on_bad_rows: Literal["error", "skip"] = "error"
    # tokenization
    sequence_len: int = Field(2048, gt=0)
    rope_scaling: RopeScaling | None = Field(None, description="Extend the model's context: {type, factor}")
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
    peft_layers_to_transform: list[NonNegativeInt] | None = Field(
        None, min_length=1, description="LoRA/DoRA only on these decoder layers (indices); backward stops below the lowest"
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
    lr_scheduler: str = Field("cosine", description="transformers' lr_scheduler_type names")
    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    warmup_steps: int | None = Field(None, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(None, gt=0)
    optimizer: str = Field("adamw_torch", description="transformers' optim names")
    bf16: Literal["auto", True, False] = "auto"
    tf32: bool | None = Field(None, description="TF32 matmuls on NVIDIA Ampere+ (ignored elsewhere)")
    gradient_checkpointing: bool | None = None
    padding_free: Literal["auto", True, False] = Field(
        "auto", description="SFT/cpt/DPO micro batches as one unpadded row, samples isolated (auto: where supported)")
    fused_loss: Literal["auto", True, False] = Field(
        "auto", description="LM head + loss (DPO: log-probs) only at trained positions, chunked (auto: where supported)")
    trunk_cache: Literal["auto", True, False] = Field(
        "auto", description="An adapter on the top layers only (peft_layers_to_transform): the frozen layers below "
        "run once per training sample, later epochs train from their kept output (exact; auto: where it applies "
        "and a row is seen more than once)")
    trunk_cache_max_mb: int = Field(2048, ge=0, description="Memory the trunk cache may hold (MiB); a run whose "
                                    "training tokens need more trains without it")
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
    lint_skip: list[Literal["learning_rate", "effective_batch", "epochs", "full_fine_tuning", "modules_to_save"]] = Field(
        default_factory=list, description="Lint checks deliberately outside the seed's ranges (recorded in run.json)")
    sample_generations: int = Field(3, ge=0, description="Validation prompts answered at each evaluation and "
                                    "logged with the stop-token rate (0: off)")
    logging_steps: int = Field(1, gt=0)
    report_to: str = Field("none", description="none or one of transformers' reporting integrations")
    tracking: Tracking = Field(default_factory=Tracking)
    # run
    output_dir: str = "./outputs/run"
    overwrite_output_dir: bool = Field(False, description="Replace an existing run in output_dir (as --overwrite)")
    overwrite_cache: bool = Field(False, description="Tokenize again instead of reusing the cache")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="transformers' set_seed takes 0 .. 2**32 - 1")
    audit: AuditConfig = Field(default_factory=AuditConfig)
    hardware: HardwareConfig = Field(default_factory=HardwareConfig)
    # several processes / devices (issue 20): validated in config/distributed.py, launched by `train --nproc`
    distributed: DistributedConfig | None = Field(None, description="Several processes: DDP, FSDP2 or DeepSpeed ZeRO")

    @model_validator(mode="after")
    def _distributed_matches_hardware(self) -> "Config":
        """plan sizes hardware.gpus x hardware.sharding: when distributed is set they must say the same."""
        dist, hw = self.distributed, self.hardware
        if dist is None:
            return self
        if hw.gpus != 1 and hw.gpus != dist.world_size:
            raise ValueError(f"hardware.gpus: {hw.gpus} contradicts distributed ({dist.processes} processes x "
                             f"{dist.nodes} nodes = {dist.world_size}); set one of them")
        if hw.sharding != "none" and hw.sharding != dist.plan_sharding:
            raise ValueError(f"hardware.sharding: {hw.sharding} contradicts distributed (backend {dist.backend} "
                             f"shards as {dist.plan_sharding}); set one of them")
        return self
    # held-out evaluation
    eval_tasks: list[AnyEvalTask] = Field(default_factory=list)
    eval_batch_size: int = Field(32, gt=0)
    eval_cache: bool = Field(False, description="Reuse greedy replies an unchanged model gave before "
                             "($TUNESMITH_CACHE/generations.sqlite; tunesmith.infer.cache)")
    judge: JudgeConfig | None = None
    probes: ProbeConfig = Field(default_factory=ProbeConfig)
    contamination: ContaminationConfig = Field(default_factory=ContaminationConfig)
    # where the config was read from (file, text, key names as written): for file:line in later errors
    _origin: Any = PrivateAttr(default=None)

    @field_validator("max_steps")
    @classmethod
    def _steps_or_epochs(cls, value: int) -> int:
        if value == 0:  # transformers trains one step for 0 and the schedule spans none
            raise ValueError("must be > 0, or -1 to train num_epochs (0 trained one step)")
        return value

    @field_validator("eval_steps", "save_steps", "logging_steps", mode="before")
    @classmethod
    def _no_step_fraction(cls, value: Any, info: Any) -> Any:
        """transformers (and Axolotl, LLaMA-Factory) read a float below 1 as a share of the total steps."""
        if isinstance(value, float) and 0 < value < 1:
            per_epoch = {"eval_steps": " (or evals_per_epoch)", "save_steps": " (or saves_per_epoch)"}
            raise ValueError(f"must be a number of steps{per_epoch.get(info.field_name, '')}; a share of the "
                             f"total steps (transformers' {value}) is not taken (got {value})")
        return value

    @field_validator("lr_scheduler", "optimizer", "report_to", "loss_type")
    @classmethod
    def _installed_choice(cls, value: str, info: Any) -> str:
        default = cls.model_fields[info.field_name].default
        return value if value == default else choices.check(info.field_name, value)

    @property
    def dataset_tasks(self) -> list[EvalTaskSpec]:
        """The ``eval_tasks`` read from a dataset file (every entry except ``lm_eval`` ones)."""
        return [t for t in self.eval_tasks if isinstance(t, EvalTaskSpec)]

    _notes: tuple[Any, ...] = PrivateAttr(default=())
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("base_model")
    @classmethod
    def _base_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty (a hub id, a model folder, a GGUF file or a catalogue name)")
        return v

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
        if self.adapter in spec.refuses_adapters:
            raise ValueError(f"adapter: method {self.method} cannot train a {self.adapter} adapter: "
                             f"{spec.refuses_adapters[self.adapter]}")
        quantized = self.quantization in ("4bit", "8bit")
        if quantized and not adapter_spec(self.adapter).low_rank:
            raise ValueError(
                f"quantization: a {self.quantization} base can only be trained through a LoRA/DoRA adapter "
                f"(adapter is {self.adapter}); full fine-tuning needs the full-precision weights"
            )
        if adapter_spec(self.adapter).base == "nf4" and self.quantization == "8bit":
            raise ValueError("quantization: adapter qlora is LoRA on a 4-bit base; 8bit needs adapter: lora")
        for a, b in (("warmup_steps", "warmup_ratio"), ("evals_per_epoch", "eval_steps"),
                     ("saves_per_epoch", "save_steps")):
            if getattr(self, a) is not None and getattr(self, b) is not None:
                raise ValueError(f"{a}: set either {a} or {b}, not both")
        return self

    @model_validator(mode="after")
    def _check_combinations(self) -> "Config":
        if self.val_set_size and self.val_set_size >= 1 and self.val_set_size != int(self.val_set_size):
            raise ValueError(
                f"val_set_size: a fraction must be < 1, a row count a whole number (got {self.val_set_size})"
            )
        names = [t.name for t in self.eval_tasks]
        if len(names) != len(set(names)):
            raise ValueError(f"eval_tasks: task names must be unique (got {names})")
        judged = [t.name for t in self.dataset_tasks if t.scorer == "judge"]
        if judged and self.judge is None:
            raise ValueError(f"judge: the judge scorer (task {judged[0]!r}) needs a judge: section (base_url, model)")
        if self.peft_layers_to_transform and self.lora_target_modules == "all-linear":
            raise ValueError("peft_layers_to_transform: needs lora_target_modules as a list of module names "
                             "(e.g. [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]); "
                             "PEFT cannot combine it with all-linear")
        if self.stride and self.stride >= self.sequence_len:
            raise ValueError(f"stride: must be < sequence_len ({self.sequence_len}) (got {self.stride})")
        has_eval = bool(self.eval_datasets) or self.val_set_size != 0  # unset: the default split may apply
        if has_eval and self.save_steps and self.eval_steps and self.save_steps % self.eval_steps:
            raise ValueError(f"save_steps: must be a multiple of eval_steps ({self.eval_steps}) to keep the best "
                             f"checkpoint (got {self.save_steps})")
        return self


class GoldenGate(_Strict):
    enabled: bool = True
    ratio: float = Field(0.98, gt=0, description="Each golden task's headline metric >= ratio x the baseline's")
    tasks: list[str] | None = Field(None, description="Tasks that count (default: every task of both, judge and weak-signal tasks aside)")
    category_ratio: float | None = Field(None, gt=0, description="Also hold every category to this ratio (default: report only)")
    noise_alpha: float | None = Field(
        0.1, gt=0, lt=1, description="A task below ratio x baseline fails only when the drop is beyond row noise: a one-sided "
                                     "paired sign test over the rows both scored (worse vs better) gives p < this, or the "
                                     "drop exceeds max_drop; otherwise it is a warning. null: every drop below the ratio fails")
    max_drop: float = Field(0.05, ge=0, description="With noise_alpha: a drop larger than this (metric units) fails "
                                                    "whatever the test says")


class FormatGate(_Strict):
    enabled: bool = True
    min: float = Field(0.95, ge=0, le=1, description="Format compliance (schema compliance, valid label, ...) >= this")


class CapabilityGate(_Strict):
    enabled: bool = True
    ratio: float = Field(0.80, gt=0, description="Probe accuracy >= ratio x the baseline's")
    max_category_drop: float = Field(0.10, ge=0, le=1, description="Flag a probe category that falls by more than this share")
    category_drop: Literal["fail", "warn"] = "warn"


class HealthGate(_Strict):
    enabled: bool = True
    min_stop_rate: float = Field(0.95, ge=0, le=1, description="Share of replies that end on a stop token")
    max_loop_rate: float | None = Field(None, ge=0, le=1, description="Share of looping replies allowed (default: not checked)")


class JudgeGate(_Strict):
    enabled: bool = True
    ratio: float = Field(0.98, gt=0, description="judge_score >= ratio x the baseline's")
    max_failure_rate: float = Field(0.05, ge=0, le=1, description="Share of rows the judge failed on")


class GateConfig(_Strict):
    """``tunesmith gate`` thresholds: candidate vs baseline evaluation results."""

    golden: GoldenGate = Field(default_factory=GoldenGate)
    format: FormatGate = Field(default_factory=FormatGate)
    capability: CapabilityGate = Field(default_factory=CapabilityGate)
    health: HealthGate = Field(default_factory=HealthGate)
    judge: JudgeGate = Field(default_factory=JudgeGate)
    missing: Literal["fail", "skip"] = Field("fail", description="A check whose results are missing: fail or skip it")


class FlywheelConfig(_Strict):
    """``tunesmith flywheel run FLYWHEEL.yaml``: one iteration (relative paths: from the file's folder)."""

    run_config: str = Field(min_length=1, description="The training run config: base_model, eval_tasks (the golden "
                                                       "set), datasets (the replay source) and settings")
    db: str = Field(min_length=1, description="The serving request log (tunesmith serve --db)")
    out: str = Field(min_length=1, description="The iteration's folder: mined/, data/, run/, gate/, lineage.json")
    reviewed: str | None = Field(None, description="The reviewed queue; without it the iteration mines and stops")
    previous_adapter: str | None = Field(None, description="Train on from this adapter (the serving one); null: the base")
    baseline: str = Field(min_length=1, description="The serving model's evaluation (eval_<name>.json or its folder)")
    since: float | None = Field(None, description="Mine requests from this unix time on")
    positives_share: float = Field(0.25, ge=0)
    replay_ratio: float = Field(0.1, ge=0, lt=1)
    replay_weight: float | None = Field(
        None, gt=0, description="Train on the built set's two parts mixed by datasets[].weight (new rows 1, replay this) "
                                "instead of train.jsonl as built")
    replay_data: list[str] | None = Field(None, description="Default: the run config's datasets")
    eval_data: list[str] | None = Field(None, description="Sets no training row may copy (default: the run config's "
                                                          "eval_tasks, eval_datasets and test_datasets)")
    train: dict[str, Any] = Field(default_factory=dict, description="Run config keys changed for this iteration")
    continue_lr_scale: float = Field(
        0.04, gt=0, le=1, description="Training on from previous_adapter without train.learning_rate: the learning "
                                      "rate is the previous run's (its run.json) times this (BENCHMARKS.md, flywheel)")
    gate: GateConfig = Field(default_factory=GateConfig)
    seed: int = 0

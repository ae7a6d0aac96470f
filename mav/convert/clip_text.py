"""transformers' CLIP text encoder (`CLIPTextModel`, `CLIPTextModelWithProjection`) → the text tower of open_clip's
`CLIP`, the network mav's C_x wraps (`mav.models.clip.ClipModel`).

Both are OpenAI's CLIP text transformer: token and learned position embeddings, pre-LayerNorm residual blocks
with causal self-attention, a final LayerNorm, the state at the end-of-text token projected without bias. Only
the names differ, and the attention's layout: transformers keeps separate q, k and v projections, open_clip one
fused `in_proj` (rows q, then k, then v); transformers stores the projection as a Linear (out × in), open_clip
as a matrix applied on the right (in × out). Reading the tensors needs no transformers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mav.errors import ModelError

# transformers name (under text_model.encoder.layers.{i}.) → open_clip name (under transformer.resblocks.{i}.)
_BLOCK = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
          "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def text_cfg(config: Mapping[str, Any]) -> tuple[dict[str, Any], int, bool]:
    """A transformers `CLIPTextConfig` (its config.json as a dict) → (open_clip `text_cfg`, embed_dim, quick_gelu).

    embed_dim is the projection's width (`projection_dim`); quick_gelu is OpenAI's activation x·σ(1.702x).
    """
    try:
        width, intermediate = int(config["hidden_size"]), int(config["intermediate_size"])
        cfg = {"context_length": int(config["max_position_embeddings"]), "vocab_size": int(config["vocab_size"]),
               "width": width, "heads": int(config["num_attention_heads"]),
               "layers": int(config["num_hidden_layers"]), "mlp_ratio": intermediate / width}
        act = config.get("hidden_act", "quick_gelu")
        eps = float(config.get("layer_norm_eps", 1e-5))
        embed_dim = int(config.get("projection_dim", width))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"the CLIP text encoder's config.json lacks or mangles {err}") from None
    if act not in ("quick_gelu", "gelu"):
        raise ModelError(f"the CLIP text encoder uses activation {act!r}; mav's CLIP has quick_gelu and gelu")
    if abs(eps - 1e-5) > 1e-12:
        raise ModelError(f"the CLIP text encoder's LayerNorm eps is {eps:g}; open_clip's CLIP uses 1e-5")
    return cfg, embed_dim, act == "quick_gelu"


def text_tensors(state: Mapping[str, Tensor], layers: int) -> dict[str, Tensor]:
    """transformers' text-encoder tensors (`text_model.…`, and `text_projection.weight` when it has one) →
    open_clip CLIP's text-tower tensors. Every tensor is used; a missing one is a ModelError naming it."""
    def take(name: str) -> Tensor:
        if name not in state:
            raise ModelError(f"the CLIP text encoder's weights have no {name}")
        used.add(name)
        return state[name]

    used: set[str] = set()
    out = {"token_embedding.weight": take("text_model.embeddings.token_embedding.weight"),
           "positional_embedding": take("text_model.embeddings.position_embedding.weight"),
           "ln_final.weight": take("text_model.final_layer_norm.weight"),
           "ln_final.bias": take("text_model.final_layer_norm.bias")}
    for i in range(layers):
        src, dst = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                [take(f"{src}self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")])
            for a, b in _BLOCK.items():
                out[f"{dst}{b}.{kind}"] = take(f"{src}{a}.{kind}")
    if "text_projection.weight" in state:
        out["text_projection"] = take("text_projection.weight").t().contiguous()
    ignored = {"text_model.embeddings.position_ids"}  # a constant buffer some versions save
    extra = sorted(set(state) - used - ignored)
    if extra:
        raise ModelError(f"the CLIP text encoder's weights hold tensors mav does not map: {', '.join(extra[:5])}")
    return out

"""transformers' CLIP encoders (`CLIPTextModelWithProjection`, `CLIPVisionModelWithProjection`) → the towers of
open_clip's `CLIP`, the network mav's C_x and C_y wrap (`mav.models.clip.ClipModel`).

Both sides are OpenAI's CLIP transformers. Text: token and learned position embeddings, pre-LayerNorm residual
blocks with causal self-attention, a final LayerNorm, the state at the end-of-text token projected without bias.
Image: patch convolution (no bias), a class token and learned positions, a LayerNorm before the blocks and one
after on the class token, then the projection. Only the names differ, and two layouts: transformers keeps
separate q, k and v projections, open_clip one fused `in_proj` (rows q, then k, then v); transformers stores a
projection as a Linear (out × in), open_clip as a matrix applied on the right (in × out). Reading the tensors
needs no transformers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mav.errors import ModelError

# transformers name (under {text,vision}_model.encoder.layers.{i}.) → open_clip name (under transformer.resblocks.{i}.)
_BLOCK = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
          "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def _quick_gelu(act: str, eps: float, what: str) -> bool:
    """Whether the tower uses OpenAI's quick GELU (else GELU); ModelError for what open_clip's CLIP cannot be."""
    if act not in ("quick_gelu", "gelu"):
        raise ModelError(f"the CLIP {what} encoder uses activation {act!r}; mav's CLIP has quick_gelu and gelu")
    if abs(eps - 1e-5) > 1e-12:
        raise ModelError(f"the CLIP {what} encoder's LayerNorm eps is {eps:g}; open_clip's CLIP uses 1e-5")
    return act == "quick_gelu"


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
    return cfg, embed_dim, _quick_gelu(act, eps, "text")


def _blocks(take, src_prefix: str, dst_prefix: str, layers: int) -> dict[str, Tensor]:
    out = {}
    for i in range(layers):
        src, dst = f"{src_prefix}encoder.layers.{i}.", f"{dst_prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                [take(f"{src}self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")])
            for a, b in _BLOCK.items():
                out[f"{dst}{b}.{kind}"] = take(f"{src}{a}.{kind}")
    return out


class _Taker:
    def __init__(self, state: Mapping[str, Tensor], what: str) -> None:
        self.state, self.what, self.used = state, what, set()

    def __call__(self, name: str) -> Tensor:
        if name not in self.state:
            raise ModelError(f"the CLIP {self.what} encoder's weights have no {name}")
        self.used.add(name)
        return self.state[name]

    def check_all_used(self, ignored: set[str] = frozenset()) -> None:
        extra = sorted(set(self.state) - self.used - set(ignored))
        if extra:
            raise ModelError(f"the CLIP {self.what} encoder's weights hold tensors mav does not map: "
                             f"{', '.join(extra[:5])}")


def text_tensors(state: Mapping[str, Tensor], layers: int) -> dict[str, Tensor]:
    """transformers' text-encoder tensors (`text_model.…`, and `text_projection.weight` when it has one) →
    open_clip CLIP's text-tower tensors. Every tensor is used; a missing one is a ModelError naming it."""
    take = _Taker(state, "text")
    out = {"token_embedding.weight": take("text_model.embeddings.token_embedding.weight"),
           "positional_embedding": take("text_model.embeddings.position_embedding.weight"),
           "ln_final.weight": take("text_model.final_layer_norm.weight"),
           "ln_final.bias": take("text_model.final_layer_norm.bias")}
    out.update(_blocks(take, "text_model.", "", layers))
    if "text_projection.weight" in state:
        out["text_projection"] = take("text_projection.weight").t().contiguous()
    take.check_all_used({"text_model.embeddings.position_ids"})  # a constant buffer some versions save
    return out


def vision_cfg(config: Mapping[str, Any]) -> tuple[dict[str, Any], int, bool]:
    """A transformers `CLIPVisionConfig` (as a dict) → (open_clip `vision_cfg`, embed_dim, quick_gelu)."""
    try:
        width, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        cfg = {"image_size": int(config["image_size"]), "patch_size": int(config["patch_size"]),
               "width": width, "layers": int(config["num_hidden_layers"]), "head_width": width // heads,
               "mlp_ratio": int(config["intermediate_size"]) / width}
        act = config.get("hidden_act", "quick_gelu")
        eps = float(config.get("layer_norm_eps", 1e-5))
        embed_dim = int(config.get("projection_dim", width))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"the CLIP image encoder's config.json lacks or mangles {err}") from None
    return cfg, embed_dim, _quick_gelu(act, eps, "image")


def vision_tensors(state: Mapping[str, Tensor], layers: int) -> dict[str, Tensor]:
    """transformers' image-encoder tensors (`vision_model.…`, `visual_projection.weight`) → open_clip CLIP's
    image-tower tensors (`visual.…`). Every tensor is used; a missing one is a ModelError naming it."""
    take = _Taker(state, "image")
    src = "vision_model."
    out = {"visual.class_embedding": take(f"{src}embeddings.class_embedding"),
           "visual.conv1.weight": take(f"{src}embeddings.patch_embedding.weight"),
           "visual.positional_embedding": take(f"{src}embeddings.position_embedding.weight"),
           "visual.proj": take("visual_projection.weight").t().contiguous()}
    for a, b in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):  # transformers spells it "layrnorm"
        for kind in ("weight", "bias"):
            out[f"visual.{b}.{kind}"] = take(f"{src}{a}.{kind}")
    out.update(_blocks(take, src, "visual.", layers))
    take.check_all_used({f"{src}embeddings.position_ids"})
    return out

"""diffusers' `PriorTransformer` (unCLIP's and Karlo's prior) → mav's `DiffusionPrior` with the options it needs
(`text_norm=False`, `causal=True`, `qkv_bias=True`, `embedding_stats=True`).

Both read [text states…, projected text embedding, timestep, noised image embedding, query] with learned
positions, run pre-LayerNorm blocks (self-attention, then a GELU MLP of 4× width) and project the query's final
state. The time features are the same sinusoids ([cos, sin], frequencies 10000^(−i/k)). Only names differ, and
the attention's layout: diffusers keeps separate q, k and v projections, mav one fused `to_qkv` (rows q, k, v).
Configurations mav cannot express are refused by name, never approximated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mav.config import PriorConfig
from mav.errors import ModelError

# diffusers name → mav name, outside the blocks
_TOP = {"time_embedding.linear_1": "time_embed.mlp.0", "time_embedding.linear_2": "time_embed.mlp.2",
        "proj_in": "image_embed_proj", "embedding_proj": "text_embed_proj",
        "encoder_hidden_states_proj": "text_proj.1", "norm_out": "norm_out", "proj_to_clip_embeddings": "out"}
# … and inside block i (transformer_blocks.{i}. → blocks.{i}.)
_BLOCK = {"norm1": "norm_attn", "attn1.to_out.0": "attn.to_out", "norm3": "norm_ff", "ff.net.0.proj": "ff.net.0",
          "ff.net.2": "ff.net.2"}
# what mav's prior assumes of the diffusers config: field → the value it must have
_REQUIRED = {"additional_embeddings": 4, "added_emb_type": "prd", "encoder_hid_proj_type": "linear",
             "norm_in_type": None, "embedding_proj_norm_type": None, "time_embed_act_fn": "silu"}


def prior_config(config: Mapping[str, Any]) -> PriorConfig:
    """A diffusers PriorTransformer config.json (as a dict) → mav's PriorConfig; ModelError naming any field whose
    value mav's prior cannot express."""
    for key, value in _REQUIRED.items():
        if config.get(key, value) != value:
            raise ModelError(f"prior config {key}={config[key]!r}: mav's prior supports only {value!r}")
    try:
        heads, head_dim = int(config["num_attention_heads"]), int(config["attention_head_dim"])
        embed = int(config["embedding_dim"])
        width = heads * head_dim
        for key in ("embedding_proj_dim", "clip_embed_dim"):
            if config.get(key) not in (None, embed):
                raise ModelError(f"prior config {key}={config[key]}: mav's prior needs it equal to embedding_dim")
        if config.get("time_embed_dim") not in (None, width):
            raise ModelError(f"prior config time_embed_dim={config['time_embed_dim']}: mav's prior needs "
                             f"num_attention_heads × attention_head_dim = {width}")
        return PriorConfig(embed_dim=embed, text_dim=embed, text_tokens=int(config["num_embeddings"]), width=width,
                           layers=int(config["num_layers"]), heads=heads, text_norm=False, causal=True,
                           qkv_bias=True, embedding_stats=True)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"the prior's config.json lacks or mangles {err}") from None


def prior_tensors(state: Mapping[str, Tensor], layers: int) -> dict[str, Tensor]:
    """diffusers PriorTransformer tensors → DiffusionPrior tensors. Every tensor is used; a missing one is a
    ModelError naming it, and so is one mav has no place for."""
    used: set[str] = set()

    def take(name: str) -> Tensor:
        if name not in state:
            raise ModelError(f"the prior's weights have no {name}")
        used.add(name)
        return state[name]

    out = {"positions": take("positional_embedding"), "query": take("prd_embedding"),
           "clip_mean": take("clip_mean"), "clip_std": take("clip_std")}
    for kind in ("weight", "bias"):
        for a, b in _TOP.items():
            out[f"{b}.{kind}"] = take(f"{a}.{kind}")
        for i in range(layers):
            src, dst = f"transformer_blocks.{i}.", f"blocks.{i}."
            out[f"{dst}attn.to_qkv.{kind}"] = torch.cat([take(f"{src}attn1.to_{p}.{kind}") for p in "qkv"])
            for a, b in _BLOCK.items():
                out[f"{dst}{b}.{kind}"] = take(f"{src}{a}.{kind}")
    extra = sorted(set(state) - used)
    if extra:
        raise ModelError(f"the prior's weights hold tensors mav does not map: {', '.join(extra[:5])}")
    return out

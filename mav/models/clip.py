"""C_x and C_y: CLIP's text and image encoders, a thin wrapper over open_clip.

Make-A-Video conditions the prior P on CLIP's pooled text embedding and per-token text states, and the decoder
D^t on CLIP's image embedding. mav either trains a small CLIP of its own (a custom open_clip config whose
weights live in the model folder) or uses a standard open_clip model with a pretrained tag.
"""

from __future__ import annotations

import copy
import functools
import os

import open_clip
import torch
import torch.nn.functional as F
from einops import rearrange
from open_clip.loss import ClipLoss
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import text_global_pool
from torch import Tensor, nn

from mav.config import ClipConfig
from mav.errors import ModelError

# open_clip clamps the learned temperature the same way after each optimiser step.
MAX_LOGIT_SCALE = 100.0


@functools.lru_cache(maxsize=1)
def _tokenizer() -> SimpleTokenizer:
    return SimpleTokenizer()


def _causal_mask(length: int, device: torch.device | None) -> Tensor:
    """Additive mask, −inf above the diagonal: token i attends to tokens ≤ i (open_clip's build_causal_mask)."""
    return torch.full((length, length), float("-inf"), device=device).triu_(1)


def _check_supported(name: str) -> None:
    """mav reads per-token states from open_clip's CLIP class; other towers (HF text, CoCa) are not wired."""
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ModelError(f"open_clip has no model named {name!r}; `open_clip.list_models()` lists them")
    if cfg.get("custom_text") or "hf_model_name" in cfg.get("text_cfg", {}) or "multimodal_cfg" in cfg:
        raise ModelError(f"open_clip model {name!r} has a custom text tower; mav supports the standard CLIP "
                         "text transformer (e.g. ViT-B-32, ViT-L-14, ViT-H-14)")


class ClipModel(nn.Module):
    """An open_clip CLIP (`.model`) with the few entry points mav needs; `.config` is its ClipConfig.

    Build with `ClipModel(config)` (random weights: a custom config to train, or the shapes to load a
    checkpoint into) or `ClipModel.from_pretrained(config)` for a standard name + pretrained tag.
    """

    def __init__(self, config: ClipConfig, model: open_clip.CLIP | None = None) -> None:
        super().__init__()
        self.config = config
        if model is None:
            model = self._build(config)
        if not isinstance(model, open_clip.CLIP):
            raise ModelError(f"mav needs an open_clip CLIP model, got {type(model).__name__}")
        self.model = model
        preprocess = getattr(model.visual, "preprocess_cfg", None) or {}
        self.mean = tuple(preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.std = tuple(preprocess.get("std", open_clip.OPENAI_DATASET_STD))
        self.resize_mode = preprocess.get("resize_mode", "shortest")
        # The causal mask is a non-persistent buffer: it is not in model.safetensors, so after a load onto
        # a module built on the meta device (or with to_empty) it would be missing or garbage.
        self.register_load_state_dict_post_hook(_restore_causal_mask)

    @staticmethod
    def _build(config: ClipConfig) -> open_clip.CLIP:
        if config.model_cfg is not None:
            try:
                return open_clip.CLIP(**copy.deepcopy(config.model_cfg))
            except (TypeError, KeyError, ValueError) as err:
                raise ModelError(f"clip/config.json model_cfg is not a valid open_clip CLIP config: {err}") from None
        _check_supported(config.name)
        quick_gelu = bool((open_clip.get_pretrained_cfg(config.name, config.pretrained or "") or {})
                          .get("quick_gelu", False))
        return open_clip.create_model(config.name, pretrained=None, force_quick_gelu=quick_gelu)

    @classmethod
    def from_pretrained(cls, config: ClipConfig, cache_dir: str | os.PathLike | None = None,
                        offline: bool = False) -> ClipModel:
        """A standard open_clip model with its pretrained weights, from the Hugging Face cache or the hub.

        offline=True reads only the local cache. Any failure (unknown name or tag, not cached, no network)
        is a ModelError that names the model and says what to do.
        """
        name, tag = config.name, config.pretrained
        if name is None:
            raise ModelError("this CLIP config has its own model_cfg (weights in the model folder); "
                             "from_pretrained is for a standard open_clip name + pretrained tag")
        _check_supported(name)
        tags = open_clip.list_pretrained_tags_by_model(name)
        tag_cfg = open_clip.get_pretrained_cfg(name, tag) if tag else {}
        if not tag_cfg:
            problem = f"has no pretrained tag {tag!r} for {name}" if tag else f"needs a pretrained tag for {name}"
            raise ModelError(f"open_clip {problem}; choose one of: {', '.join(tags) or '(none)'}")
        path = _download_weights(name, tag, tag_cfg, cache_dir, offline)
        preprocess = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
        try:
            model = open_clip.create_model(name, pretrained=path, force_quick_gelu=bool(tag_cfg.get("quick_gelu")),
                                           force_preprocess_cfg=preprocess)
        except (RuntimeError, OSError, ValueError) as err:
            raise ModelError(f"could not load CLIP {name} / {tag} from {path}: {err}") from None
        return cls(config, model).eval()

    # ------------------------------------------------------------------------------------------------------------

    @property
    def embed_dim(self) -> int:
        """Width of the joint (pooled, projected) text/image embedding."""
        proj = self.model.text_projection
        return proj.out_features if isinstance(proj, nn.Linear) else proj.shape[-1]

    @property
    def text_width(self) -> int:
        """Width of the per-token text states."""
        return self.model.transformer.width

    @property
    def context_length(self) -> int:
        return self.model.context_length

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size if isinstance(size, int) else size[0])

    # ------------------------------------------------------------------------------------------------------------

    def tokenize(self, texts: list[str] | str) -> Tensor:
        """Token ids `(b, context_length)` long: [SOT] text [EOT] then padding with `config.text_pad_id` (0 in
        open_clip); long texts are cut to fit (their last id is then EOT)."""
        if isinstance(texts, str):
            texts = [texts]
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("tokenize takes a list of strings")
        ids = _tokenizer()(list(texts), context_length=self.context_length)
        if self.config.text_pad_id:
            ids = ids.masked_fill(~self.token_mask(ids), self.config.text_pad_id)
        return ids

    def encode_text(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """C_x: per-token states `(b, L, text_width)` (after the final LayerNorm), the pooled embedding
        `(b, embed_dim)` (= model.encode_text; L2-normalised unless `config.normalize_text` is off) and a `(b, L)`
        bool mask of real tokens."""
        m = self.model
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(ids).to(cast) + m.positional_embedding.to(cast)
        tokens = m.ln_final(m.transformer(x, attn_mask=m.attn_mask))
        pooled = text_global_pool(tokens, ids, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        pooled = m.text_projection(pooled) if isinstance(m.text_projection, nn.Linear) else pooled @ m.text_projection
        return tokens, (F.normalize(pooled, dim=-1) if self.config.normalize_text else pooled), self.token_mask(ids)

    @staticmethod
    def token_mask(ids: Tensor) -> Tensor:
        """True for [SOT], the text and the first [EOT]; False for the padding after it.

        Not `ids != 0`: id 0 is also a real BPE token ("!").
        """
        is_eot = ids == _tokenizer().eot_token_id
        return (is_eot.long().cumsum(dim=1) - is_eot.long()) == 0

    def preprocess(self, images: Tensor) -> Tensor:
        """`b 3 h w` in [−1, 1], any size → CLIP's input: resized (shortest side, bicubic) and centre-cropped
        to image_size, or squashed when the pretrained tag says so, then normalised with CLIP's mean and std."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"CLIP takes images b 3 h w, got shape {tuple(images.shape)}")
        size = self.model.visual.image_size
        th, tw = (size, size) if isinstance(size, int) else tuple(size)
        h, w = images.shape[-2:]
        if self.resize_mode == "squash":
            nh, nw = th, tw
        else:
            scale = max(th / h, tw / w)
            nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
        x = (images.float() + 1) / 2
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        top, left = (nh - th) // 2, (nw - tw) // 2
        x = x[:, :, top:top + th, left:left + tw]
        mean = rearrange(torch.tensor(self.mean, device=x.device), "c -> 1 c 1 1")
        std = rearrange(torch.tensor(self.std, device=x.device), "c -> 1 c 1 1")
        return ((x - mean) / std).to(next(self.model.visual.parameters()).dtype)

    def encode_image(self, images: Tensor) -> Tensor:
        """C_y: the image embedding `(b, embed_dim)` of `b 3 h w` images in [−1, 1], L2-normalised unless
        `config.normalize_image` is off."""
        embed = self.model.encode_image(self.preprocess(images))
        return F.normalize(embed, dim=-1) if self.config.normalize_image else embed

    def contrastive_loss(self, images: Tensor, ids: Tensor, loss_fn: ClipLoss | None = None) -> Tensor:
        """CLIP's symmetric InfoNCE over a batch of matching (image, text) pairs (Radford et al. 2021).

        Pass an `open_clip.loss.ClipLoss(rank=…, world_size=…, local_loss=…)` to gather features across
        processes; the default is the single-process loss.
        """
        image_features = F.normalize(self.encode_image(images), dim=-1)  # whatever config.normalize_image says
        text_features = F.normalize(self.encode_text(ids)[1], dim=-1)  # whatever config.normalize_text says
        logit_scale = self.model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        return (loss_fn or ClipLoss())(image_features, text_features, logit_scale)

    def forward(self, images: Tensor, ids: Tensor) -> Tensor:
        """The contrastive loss, so a training loop can wrap this module in DDP."""
        return self.contrastive_loss(images, ids)


def _restore_causal_mask(module: ClipModel, incompatible_keys) -> None:
    m = module.model
    m.attn_mask = _causal_mask(m.context_length, m.positional_embedding.device).to(m.positional_embedding.dtype)


def _download_weights(name: str, tag: str, tag_cfg: dict, cache_dir, offline: bool) -> str:
    """Path of the tag's weights in the Hugging Face cache (safetensors first, as open_clip does)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    repo_and_file = tag_cfg.get("hf_hub", "")
    if not repo_and_file:
        raise ModelError(f"open_clip tag {name} / {tag} is not on the Hugging Face hub; mav cannot fetch it")
    repo, filename = os.path.split(repo_and_file)  # "org/repo/" names the repo's default open_clip file
    candidates = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    if filename:
        stem = filename.rsplit(".", 1)[0]
        candidates = [filename] if filename.endswith(".safetensors") else [stem + ".safetensors", filename]
    local_only, last_error = offline, None
    for candidate in candidates:
        try:
            return hf_hub_download(repo, candidate, cache_dir=cache_dir, local_files_only=local_only)
        except LocalEntryNotFoundError as err:
            # Not cached (offline) or no connection: try the other file name in the cache only.
            last_error, local_only = err, True
        except EntryNotFoundError as err:
            last_error = err
        except Exception as err:  # noqa: BLE001 - repository missing, gated, HTTP errors: all mean "no weights"
            raise ModelError(f"could not download CLIP weights {name} / {tag} from {repo}: {err}") from None
    where = f" in {cache_dir}" if cache_dir else ""
    if offline or isinstance(last_error, LocalEntryNotFoundError):
        raise ModelError(f"CLIP weights {name} / {tag} ({repo}) are not in the local Hugging Face cache{where}"
                         f"{' and offline mode is on' if offline else ' and the hub cannot be reached'}; "
                         "run once online to download them, or use a model folder with its own CLIP")
    raise ModelError(f"the hub repo {repo} has none of {', '.join(candidates)} for CLIP {name} / {tag}")

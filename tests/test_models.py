"""Models on tiny configs: the pseudo-3D identity at init, shapes, conditioning, masking, determinism."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mav.config import PriorConfig, UNetConfig
from mav.models import build_component
from mav.models.prior import DiffusionPrior
from mav.models.pseudo3d import Pseudo3DAttention, Pseudo3DConv
from mav.models.unet import SpaceTimeUNet, is_temporal_parameter
from mav.presets import preset

TINY = preset("tiny").components
BATCH, FRAMES, SIZE = 2, 4, 16


def build(component: str, seed: int = 0, **changes) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = TINY[component]
    if changes:
        config = dataclasses.replace(config, **changes)
    return build_component(component, config).eval()


@torch.no_grad()
def perturb(model: torch.nn.Module, select, scale: float = 0.1, seed: int = 1) -> None:
    """Add noise to every parameter whose name `select` accepts, so nothing stays at a special init value."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if select(name):
            param.add_(torch.randn(param.shape, generator=generator) * scale)


def unet_inputs(config: UNetConfig, frames: int = FRAMES, size: int = SIZE, seed: int = 2) -> tuple:
    """x, t and every conditioning the config supports, with a partly-false text mask."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, config.in_channels, frames, size, size, generator=g)
    t = torch.tensor([3, 700])
    kwargs = {}
    if config.cond_channels:
        kwargs["cond"] = torch.randn(BATCH, config.cond_channels, frames, size, size, generator=g)
    if config.image_embed_dim:
        kwargs["image_embed"] = torch.randn(BATCH, config.image_embed_dim, generator=g)
    if config.text_dim:
        kwargs["text_tokens"] = torch.randn(BATCH, 6, config.text_dim, generator=g)
        mask = torch.zeros(BATCH, 6, dtype=torch.bool)
        mask[0, :4] = True
        mask[1, :2] = True
        kwargs["text_mask"] = mask
    if config.fps_cond:
        kwargs["fps"] = torch.tensor([4.0, 7.5])
    return x, t, kwargs


def per_frame(model: SpaceTimeUNet, x: torch.Tensor, t: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """The image model (temporal layers off) applied to each frame on its own, restacked as b c f h w."""
    frames = []
    for i in range(x.shape[2]):
        frame_kwargs = dict(kwargs)
        if "cond" in kwargs:
            frame_kwargs["cond"] = kwargs["cond"][:, :, i]
        frames.append(model(x[:, :, i], t, temporal=False, **frame_kwargs))
    return torch.stack(frames, dim=2)


@torch.no_grad()
def test_video_equals_image_per_frame_at_init():
    model = build("interpolator")  # every conditioning: image embed, text + mask, fps, cond channels
    perturb(model, lambda name: not is_temporal_parameter(name))
    x, t, kwargs = unet_inputs(model.config)
    video = model(x, t, **kwargs)
    images = per_frame(model, x, t, kwargs)
    assert video.abs().mean() > 0.1  # not trivially zero
    assert (video - images).abs().max() < 1e-5


@pytest.mark.parametrize("part", ["temporal.", "temporal_attn."])
@torch.no_grad()
def test_trained_temporal_layers_mix_frames(part):
    model = build("interpolator")
    perturb(model, lambda name: not is_temporal_parameter(name))
    perturb(model, lambda name: part in name, scale=0.3, seed=3)
    x, t, kwargs = unet_inputs(model.config)
    assert (model(x, t, **kwargs) - per_frame(model, x, t, kwargs)).abs().max() > 1e-3


@pytest.mark.parametrize("component", ["decoder", "interpolator", "sr_low", "sr_high"])
@torch.no_grad()
def test_unet_shapes_for_images_and_videos(component):
    model = build(component)
    config = model.config
    x, t, kwargs = unet_inputs(config, frames=3)
    assert model(x, t, **kwargs).shape == (BATCH, config.out_channels, 3, SIZE, SIZE)
    image_kwargs = {**kwargs, "cond": kwargs["cond"][:, :, 0]} if "cond" in kwargs else kwargs
    assert model(x[:, :, 0], t, **image_kwargs).shape == (BATCH, config.out_channels, SIZE, SIZE)
    if config.temporal:
        assert model(x, t, temporal=False, **kwargs).shape == (BATCH, config.out_channels, 3, SIZE, SIZE)
    else:
        assert not list(model.temporal_parameters())


@torch.no_grad()
def test_temporal_attention_handles_any_frame_count():
    model = build("decoder")
    perturb(model, lambda name: True)
    for frames in (1, 2, 9):
        x, t, kwargs = unet_inputs(model.config, frames=frames, size=8)
        out = model(x, t, **kwargs)
        assert out.shape == x.shape and torch.isfinite(out).all()


@torch.no_grad()
def test_temporal_false_is_per_frame_even_when_trained():
    model = build("decoder")
    perturb(model, lambda name: True)
    x, t, kwargs = unet_inputs(model.config)
    assert (model(x, t, temporal=False, **kwargs) - per_frame(model, x, t, kwargs)).abs().max() < 1e-5


@torch.no_grad()
def test_masked_text_tokens_are_ignored_by_the_unet():
    model = build("decoder")
    perturb(model, lambda name: True)
    x, t, kwargs = unet_inputs(model.config)
    base = model(x, t, **kwargs)
    changed = dict(kwargs, text_tokens=kwargs["text_tokens"].clone())
    changed["text_tokens"][0, 5] = torch.randn(model.config.text_dim) * 3  # masked for item 0
    assert (model(x, t, **changed) - base).abs().max() == 0
    changed["text_tokens"][0, 0] = torch.randn(model.config.text_dim) * 3  # a real token
    assert (model(x, t, **changed) - base)[0].abs().max() > 1e-4
    unmasked = dict(kwargs, text_mask=torch.ones_like(kwargs["text_mask"]))
    assert (model(x, t, **unmasked) - base).abs().max() > 1e-4


@torch.no_grad()
def test_unet_conditioning_changes_the_output():
    model = build("interpolator")
    perturb(model, lambda name: True)
    x, t, kwargs = unet_inputs(model.config)
    base = model(x, t, **kwargs)
    for key in ("image_embed", "fps", "cond"):
        assert (model(x, t, **dict(kwargs, **{key: kwargs[key] + 1.0})) - base).abs().max() > 1e-4, key
    all_masked = dict(kwargs, text_mask=torch.zeros_like(kwargs["text_mask"]), image_embed=None)
    assert torch.isfinite(model(x, t, **all_masked)).all()  # the null token keeps attention defined


def test_unet_rejects_inconsistent_inputs():
    model = build("interpolator")
    x, t, kwargs = unet_inputs(model.config)
    with pytest.raises(ValueError, match="cond"):
        model(x, t, **{k: v for k, v in kwargs.items() if k != "cond"})
    with pytest.raises(ValueError, match="channels"):
        model(x[:, :2], t, **kwargs)
    with pytest.raises(ValueError, match="text"):
        build("sr_low")(x, t, cond=x, text_tokens=kwargs["text_tokens"])


def test_pseudo3d_layers_start_as_identity_over_time():
    torch.manual_seed(0)
    conv, attn = Pseudo3DConv(4, 8), Pseudo3DAttention(8, 2)
    x = torch.randn(2 * 5, 4, 6, 6)  # (b f) c h w
    assert torch.equal(conv(x, frames=5), conv(x, frames=5, temporal=False))
    h = torch.randn(2 * 5, 8, 6, 6)
    assert torch.equal(attn(h, frames=5), attn(h, frames=5, temporal=False))


def test_gradients_reach_temporal_layers():
    model = build("decoder")
    x, t, kwargs = unet_inputs(model.config)
    model(x, t, **kwargs).square().mean().backward()
    grads = {name: p.grad for name, p in model.named_parameters() if is_temporal_parameter(name)}
    assert any(g is not None and g.abs().sum() > 0 for name, g in grads.items() if ".temporal." in name)
    assert any(g is not None and g.abs().sum() > 0 for name, g in grads.items() if "temporal_attn.to_out" in name)


def prior_inputs(config: PriorConfig, seed: int = 4) -> tuple:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, config.embed_dim, generator=g)
    mask = torch.zeros(BATCH, config.text_tokens, dtype=torch.bool)
    mask[:, :5] = True
    kwargs = {"text_tokens": torch.randn(BATCH, config.text_tokens, config.text_dim, generator=g),
              "text_embed": torch.randn(BATCH, config.embed_dim, generator=g), "text_mask": mask}
    return x, torch.tensor([0, 999]), kwargs


@torch.no_grad()
def test_prior_shape_and_text_dependence():
    prior = build("prior")
    x, t, kwargs = prior_inputs(prior.config)
    out = prior(x, t, **kwargs)
    assert out.shape == (BATCH, prior.config.embed_dim)
    other_tokens = dict(kwargs, text_tokens=kwargs["text_tokens"].roll(1, dims=0))
    assert (prior(x, t, **other_tokens) - out).abs().max() > 1e-4
    other_embed = dict(kwargs, text_embed=kwargs["text_embed"].roll(1, dims=0))
    assert (prior(x, t, **other_embed) - out).abs().max() > 1e-4
    assert (prior(x, t + 1, **kwargs) - out).abs().max() > 1e-5
    assert prior(x, t, **dict(kwargs, text_tokens=kwargs["text_tokens"][:, :7],
                               text_mask=kwargs["text_mask"][:, :7])).shape == out.shape


@torch.no_grad()
def test_prior_ignores_masked_text_tokens():
    prior = build("prior")
    x, t, kwargs = prior_inputs(prior.config)
    out = prior(x, t, **kwargs)
    changed = dict(kwargs, text_tokens=kwargs["text_tokens"].clone())
    changed["text_tokens"][:, 9] = torch.randn(prior.config.text_dim) * 3  # masked
    assert (prior(x, t, **changed) - out).abs().max() == 0
    changed["text_tokens"][:, 1] = torch.randn(prior.config.text_dim) * 3  # real
    assert (prior(x, t, **changed) - out).abs().max() > 1e-4


@torch.no_grad()
def test_same_seed_same_model_and_output():
    a, b, c = build("decoder", seed=7), build("decoder", seed=7), build("decoder", seed=8)
    x, t, kwargs = unet_inputs(a.config)
    assert torch.equal(a(x, t, **kwargs), b(x, t, **kwargs))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


@torch.no_grad()
def test_meta_build_then_assign_load_matches():
    """loading.load_component builds on the meta device and loads with assign=True: nothing may live in buffers."""
    source = build("interpolator")
    with torch.device("meta"):
        target = build_component("interpolator", source.config)
    target.load_state_dict(source.state_dict(), strict=True, assign=True)
    x, t, kwargs = unet_inputs(source.config)
    assert torch.equal(target.eval()(x, t, **kwargs), source(x, t, **kwargs))


def test_build_component_dispatch():
    assert isinstance(build("prior"), DiffusionPrior)
    for component in ("decoder", "sr_high"):
        model = build(component)
        assert isinstance(model, SpaceTimeUNet) and model.config == TINY[component]
    assert build("sr_high").config.temporal is False
    with pytest.raises(ValueError, match="unknown component"):
        build_component("vae", TINY["decoder"])
    with pytest.raises(TypeError):
        build_component("prior", TINY["decoder"])


def test_temporal_conv_equals_conv1d_over_frames():
    """The (k, 1) Conv2d on a `b c f (h w)` view computes exactly the Conv1d over `(b h w) c f` it stands for."""
    torch.manual_seed(0)
    layer = Pseudo3DConv(4, 6)
    torch.nn.init.normal_(layer.temporal.weight)
    torch.nn.init.normal_(layer.temporal.bias)
    b, f, h, w = 2, 5, 3, 4
    x = torch.randn(b * f, 4, h, w)
    spatial = layer.spatial(x)
    reference = layer.temporal(spatial.reshape(b, f, 6, h, w).permute(0, 3, 4, 2, 1).reshape(b * h * w, 6, f))
    reference = reference.reshape(b, h, w, 6, f).permute(0, 4, 3, 1, 2).reshape(b * f, 6, h, w)
    assert torch.allclose(layer(x, f), reference, atol=1e-5)


@pytest.mark.parametrize("fp32_attention", [True, False])
def test_bf16_autocast_attention_matches_fp32(fp32_attention):
    """Under CPU bf16 autocast, attention runs in fp32 (faster there) or bf16; either stays close to fp32."""
    from mav.models import layers

    torch.manual_seed(0)
    attention = layers.Attention(32, 4, fp32_on_cpu=fp32_attention)
    x, bias = torch.randn(3, 7, 32), torch.randn(1, 4, 7, 7)
    expected = attention(x, attn_mask=bias)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = attention(x, attn_mask=bias)
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), expected, atol=0.05)


@torch.no_grad()
def test_fps_and_augmentation_conditions_start_as_no_ops():
    """Adding fps (D^t) or the SR noise level to a trained image model must not move its output at first: their
    embeddings start at zero (a random last layer shifted the frozen spatial layers' time embedding)."""
    for component, key, values in (("decoder", "fps", ([4.0, 7.5], [30.0, 1.0])),
                                   ("sr_high", "aug_level", ([0.0, 0.0], [0.08, 0.02]))):
        model = build(component)
        perturb(model, lambda n: not n.startswith(("fps_embed", "aug_embed")) and "temporal_fps" not in n)
        x, t, kwargs = unet_inputs(model.config, frames=1 if component == "sr_high" else FRAMES,
                                   size=model.config.sample_size if component == "sr_high" else SIZE)
        if component == "sr_high":
            x, kwargs = x[:, :, 0], {"cond": kwargs["cond"][:, :, 0]}
        kwargs.pop(key, None)
        a = model(x, t, **kwargs, **{key: torch.tensor(values[0])})
        b = model(x, t, **kwargs, **{key: torch.tensor(values[1])})
        torch.testing.assert_close(a, b)


def test_temporal_layers_can_read_fps():
    """The fps embedding reaches the temporal attention directly (zero-initialised scale and shift): once
    trained, changing fps changes the video output while the image model (temporal layers off) ignores it."""
    model = build("decoder")
    assert model.config.fps_temporal
    perturb(model, lambda n: True)
    x, t, kwargs = unet_inputs(model.config)
    kwargs.pop("fps")
    with torch.no_grad():
        fast = model(x, t, fps=torch.tensor([30.0, 30.0]), **kwargs)
        slow = model(x, t, fps=torch.tensor([3.75, 3.75]), **kwargs)
    assert (fast - slow).abs().max() > 1e-3
    # gradients reach the new parameters from the first step, even though fps_embed's output layer starts at zero
    fresh = build("decoder")
    with torch.no_grad():
        for name, p in fresh.named_parameters():
            if "temporal_attn.to_out" in name:
                p.add_(0.1)
    fresh(x, t, fps=torch.tensor([4.0, 7.5]), **kwargs).square().mean().backward()
    grads = {n: p.grad for n, p in fresh.named_parameters() if "temporal_fps" in n or n.startswith("fps_embed.mlp.2")}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_fps_guidance_drops_the_fps_where_the_sample_is_not_kept():
    """With fps_guidance, fps_keep=False is the same as giving no fps at all (the fps embedding's output layer has
    a bias, so zeroing its input would not do), and fps_keep=True the same as plain fps, sample by sample."""
    model = build("decoder", fps_guidance=True)
    perturb(model, lambda n: True)
    x, t, kwargs = unet_inputs(model.config)
    with torch.no_grad():
        mixed = model(x, t, fps_keep=torch.tensor([False, True]), **kwargs)
        with_fps = model(x, t, **kwargs)
        without = model(x, t, **{k: v for k, v in kwargs.items() if k != "fps"})
    assert (with_fps - without).abs().max() > 1e-3  # the check below can fail
    torch.testing.assert_close(mixed[0], without[0])
    torch.testing.assert_close(mixed[1], with_fps[1])


def test_fps_guidance_needs_fps_and_an_embedding():
    with pytest.raises(ValueError, match="fps_guidance"):
        dataclasses.replace(TINY["decoder"], fps_guidance=True, fps_cond=False, fps_temporal=False)
    with pytest.raises(ValueError, match="fps_guidance"):
        dataclasses.replace(TINY["decoder"], fps_guidance=True, image_embed_dim=0)

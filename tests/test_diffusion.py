"""Noise schedules against their closed forms, samplers against a Gaussian they must recover, guidance."""

from __future__ import annotations

import math

import pytest
import torch

from mav.config import DiffusionConfig
from mav.diffusion import samplers
from mav.diffusion.guidance import classifier_free, x0_denoiser
from mav.diffusion.noise import frame_noise, gaussian_noise
from mav.diffusion.schedule import NoiseSchedule
from mav.errors import UsageError

T = 1000


def schedule(kind: str = "cosine", prediction: str = "eps", timesteps: int = T) -> NoiseSchedule:
    return NoiseSchedule(DiffusionConfig(schedule=kind, timesteps=timesteps, prediction=prediction))


# ---------------------------------------------------------------------------------------------------------------
# Schedules


def test_cosine_alphas_cumprod_closed_form():
    s = schedule("cosine")
    assert s.betas.dtype == torch.float64 and s.betas.shape == (T,)

    def f(t: float) -> float:
        return math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2

    for i in (0, 1, 10, 250, 500, 900, 998):  # index i is step t = i + 1
        assert s.alphas_cumprod[i].item() == pytest.approx(f(i + 1) / f(0), rel=1e-9, abs=1e-15)
    # f(T) = 0 would make the last β 1: it is clipped to 0.999, and only it
    assert s.betas[-1].item() == pytest.approx(0.999)
    assert s.betas.max().item() == pytest.approx(0.999) and (s.betas[:-1] < 0.999).all()
    assert (s.betas > 0).all() and (s.alphas_cumprod.diff() < 0).all()
    assert s.alphas_cumprod[-1].item() == pytest.approx(f(T - 1) / f(0) * 0.001, rel=1e-9)


def test_linear_betas_endpoints():
    s = schedule("linear")
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    assert (s.betas.diff() > 0).all()
    half = schedule("linear", timesteps=500)  # scaled by 1000 / T
    assert half.betas[0].item() == pytest.approx(2e-4) and half.betas[-1].item() == pytest.approx(0.04)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_derived_arrays_against_their_formulas(kind):
    s = schedule(kind)
    betas = s.betas.tolist()
    for t in (0, 1, 37, 500, T - 1):
        abar = math.prod(1 - b for b in betas[: t + 1])
        abar_prev = math.prod(1 - b for b in betas[:t])  # empty product = 1 at t = 0
        beta, alpha = betas[t], 1 - betas[t]
        assert s.alphas_cumprod[t].item() == pytest.approx(abar, rel=1e-10)
        assert s.alphas_cumprod_prev[t].item() == pytest.approx(abar_prev, rel=1e-10)
        assert s.sqrt_alphas_cumprod[t].item() == pytest.approx(math.sqrt(abar), rel=1e-10)
        assert s.sqrt_one_minus_alphas_cumprod[t].item() == pytest.approx(math.sqrt(1 - abar), rel=1e-10)
        assert s.posterior_variance[t].item() == pytest.approx(beta * (1 - abar_prev) / (1 - abar), rel=1e-9,
                                                                abs=1e-20)
        assert s.posterior_mean_coef1[t].item() == pytest.approx(beta * math.sqrt(abar_prev) / (1 - abar), rel=1e-9)
        assert s.posterior_mean_coef2[t].item() == pytest.approx((1 - abar_prev) * math.sqrt(alpha) / (1 - abar),
                                                                 rel=1e-9, abs=1e-20)
    assert s.posterior_variance[0].item() == 0.0
    assert s.posterior_log_variance_clipped[0].item() == pytest.approx(math.log(s.posterior_variance[1].item()))
    assert s.posterior_log_variance_clipped[5].item() == pytest.approx(math.log(s.posterior_variance[5].item()))
    for array in (s.alphas_cumprod, s.posterior_variance, s.posterior_mean_coef1):
        assert array.dtype == torch.float64


def test_q_sample_mean_and_variance():
    s = schedule("cosine")
    t = 300
    abar = s.alphas_cumprod[t].item()
    x0 = torch.full((20000,), 0.5)
    noise = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    x_t = s.q_sample(x0, torch.full((20000,), t), noise)
    assert x_t.dtype == torch.float32
    torch.testing.assert_close(s.q_sample(x0, t, torch.zeros_like(x0)), math.sqrt(abar) * x0)
    assert x_t.mean().item() == pytest.approx(math.sqrt(abar) * 0.5, abs=0.02)
    assert x_t.var().item() == pytest.approx(1 - abar, rel=0.03)


def test_q_sample_per_item_t_on_video_shapes():
    s = schedule("linear")
    x0 = torch.randn(3, 3, 2, 4, 4)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 500, 999])
    x_t = s.q_sample(x0, t, noise)
    for i in range(3):
        torch.testing.assert_close(x_t[i], s.q_sample(x0[i:i + 1], t[i:i + 1], noise[i:i + 1])[0])
        a = s.alphas_cumprod[t[i]].item()
        torch.testing.assert_close(x_t[i], math.sqrt(a) * x0[i] + math.sqrt(1 - a) * noise[i])
    assert s.q_sample(x0.bfloat16(), t, noise.bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_parameterisations_round_trip(prediction):
    s = schedule("cosine", prediction)
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    x0 = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    x_t = s.q_sample(x0, t, noise)
    output = s.target(x0, noise, t)
    torch.testing.assert_close(s.predict_x0(x_t, t, output), x0, rtol=0, atol=1e-6)
    torch.testing.assert_close(s.predict_eps(x_t, t, output), noise, rtol=0, atol=1e-6)
    assert s.training_loss(output, x0, noise, t).item() == pytest.approx(0.0, abs=1e-12)
    assert s.training_loss(output + 0.5, x0, noise, t).item() == pytest.approx(0.25)


def test_v_target_formula():
    s = schedule("cosine", "v")
    x0, noise, t = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([3, 30, 300, 900])
    a = s.sqrt_alphas_cumprod[t].float()[:, None]
    sig = s.sqrt_one_minus_alphas_cumprod[t].float()[:, None]
    torch.testing.assert_close(s.target(x0, noise, t), a * noise - sig * x0)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_min_snr_weight_is_min_snr_gamma_on_the_x0_error(prediction):
    """Each parameterisation's weight turns its loss into min(SNR, γ)·‖x̂0 − x0‖² (Hang et al. 2023, Eq. 7)."""
    s = schedule(prediction=prediction)
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([5, 100, 400, 700, 950, 999])
    x0, noise = torch.randn(6, 3, 4, generator=g, dtype=torch.float64), torch.randn(6, 3, 4, generator=g,
                                                                                    dtype=torch.float64)
    x_t = s.q_sample(x0, t, noise)
    output = s.target(x0, noise, t) + 0.1 * torch.randn(6, 3, 4, generator=g, dtype=torch.float64)
    weight = s.min_snr_weight(t, 5.0)
    per_sample = ((output - s.target(x0, noise, t)) ** 2).mean(dim=(1, 2)) * weight
    x0_error = ((s.predict_x0(x_t, t, output) - x0) ** 2).mean(dim=(1, 2))
    torch.testing.assert_close(per_sample, s.snr(t).clamp(max=5.0) * x0_error, rtol=1e-6, atol=1e-12)
    loss = s.training_loss(output, x0, noise, t, min_snr_gamma=5.0)
    torch.testing.assert_close(loss, per_sample.mean().float(), rtol=1e-5, atol=1e-8)


def test_high_noise_share_of_timesteps():
    from mav.diffusion.noise import draw_timesteps, generators

    uniform = draw_timesteps(generators(range(4000)), 1000)
    assert torch.equal(draw_timesteps(generators(range(4000)), 1000, 0.0), uniform)  # 0: the uniform draws exactly
    assert abs(float((uniform >= 500).float().mean()) - 0.5) < 0.03
    biased = draw_timesteps(generators(range(4000)), 1000, 0.5)
    assert biased.min() >= 0 and biased.max() < 1000
    assert abs(float((biased >= 500).float().mean()) - 0.75) < 0.03  # ½ from the top half + ½ · ½ uniform
    assert abs(float((biased < 250).float().mean()) - 0.125) < 0.03  # the rest still covers the low end
    assert bool((draw_timesteps(generators(range(200)), 1000, 1.0) >= 500).all())
    with pytest.raises(ValueError, match="high_noise"):
        draw_timesteps(generators([0]), 1000, 1.5)


def test_training_loss_mask_scores_only_the_masked_elements():
    s = schedule(prediction="v")
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(2, 3, 5, 4, 4, generator=g), torch.randn(2, 3, 5, 4, 4, generator=g)
    t = torch.tensor([10, 600])
    output = torch.randn(2, 3, 5, 4, 4, generator=g)
    mask = torch.zeros(2, 1, 5, 1, 1, dtype=torch.bool)
    mask[:, :, 1:4] = True
    changed = output.clone()
    changed[:, :, [0, 4]] += 100.0  # wrong only where the mask is off
    assert s.training_loss(changed, x0, noise, t, mask=mask) == s.training_loss(output, x0, noise, t, mask=mask)
    expected = ((output - s.target(x0, noise, t))[:, :, 1:4] ** 2).mean()
    torch.testing.assert_close(s.training_loss(output, x0, noise, t, mask=mask), expected)


def test_uniform_timesteps():
    s = schedule()
    ts = s.timesteps(10)
    assert ts.dtype == torch.long and ts.tolist() == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    ts = s.timesteps(25)
    assert len(ts) == 25 and ts[0] == T - 1 and ts[-1] == 0
    gaps = -ts.diff()
    assert gaps.max() - gaps.min() <= 1
    assert s.timesteps(T).tolist() == list(range(T - 1, -1, -1))
    assert s.timesteps(1).tolist() == [T - 1]


@pytest.mark.parametrize("steps, strength", [(10, 0.5), (25, 0.7), (4, 0.3), (50, 0.05), (7, 1.0)])
def test_strength_keeps_the_tail(steps, strength):
    s = schedule()
    full, tail = s.timesteps(steps), s.timesteps(steps, strength)
    assert torch.equal(full[len(full) - len(tail):], tail)
    spacing = (T - 1) / (steps - 1)
    assert abs(tail[0].item() - strength * (T - 1)) <= spacing / 2 + 1


def test_quadratic_timesteps():
    s = schedule()
    ts = s.timesteps(10, spacing="quadratic")
    assert ts.tolist() == [round(999 * (k / 9) ** 2) for k in range(9, -1, -1)]
    for steps in (3, 50, 400, T):
        ts = s.timesteps(steps, spacing="quadratic")
        assert len(ts) == steps and ts[0] == T - 1 and ts[-1] == 0 and (ts.diff() < 0).all()
    assert s.timesteps(25, 0.6, spacing="quadratic")[0] == s.timesteps(25, 0.6)[0]


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(steps=T + 1), dict(steps=10, strength=0.0),
                                    dict(steps=10, strength=1.5), dict(steps=10, spacing="karras")])
def test_timesteps_rejects_bad_values(kwargs):
    with pytest.raises(UsageError):
        schedule().timesteps(**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Samplers recover a known Gaussian with its exact denoiser

MU, SIGMA = torch.tensor([0.7, -0.4]), torch.tensor([0.3, 0.5])
N = 4000
TOL = 0.03


def gaussian_denoiser(s: NoiseSchedule, mu: torch.Tensor = MU, sigma: torch.Tensor = SIGMA):
    """E[x_0 | x_t] for x_0 ~ N(μ, σ²): μ + σ²√ᾱ / (ᾱσ² + 1 − ᾱ) · (x_t − √ᾱ μ)."""

    def denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = s.alphas_cumprod[t].float()[:, None]  # (b, 1)
        return mu + sigma**2 * a.sqrt() / (a * sigma**2 + 1 - a) * (x_t - a.sqrt() * mu)

    return denoiser


def draw(name: str, steps: int, spacing: str = "uniform", eta: float = 0.0, seed: int = 0, denoiser=None,
         kind: str = "cosine") -> torch.Tensor:
    s = schedule(kind)
    g = torch.Generator().manual_seed(seed)
    x = gaussian_noise((N, 2), g)
    return samplers.sample(name, denoiser or gaussian_denoiser(s), s, x, s.timesteps(steps, spacing=spacing),
                           generator=g, eta=eta)


def matches_target(x: torch.Tensor) -> bool:
    return bool(((x.mean(0) - MU).abs() < TOL).all() and ((x.std(0) - SIGMA).abs() < TOL).all())


@pytest.mark.parametrize("name, steps, eta, kind", [
    ("ddim", 50, 0.0, "cosine"),
    ("dpmpp", 50, 0.0, "cosine"),
    ("dpmpp", 50, 0.0, "linear"),
    # ancestral sampling with the posterior variance β̃ needs more steps than the deterministic samplers
    ("ddpm", 250, 0.0, "cosine"),
    ("ddim", 250, 1.0, "cosine"),
])
def test_sampler_recovers_gaussian(name, steps, eta, kind):
    x = draw(name, steps, eta=eta, kind=kind)
    assert x.shape == (N, 2) and x.dtype == torch.float32
    assert matches_target(x), (x.mean(0), x.std(0))


@pytest.mark.parametrize("name", ["dpmpp", "ddim"])
def test_few_steps_with_quadratic_spacing(name):
    x = draw(name, 10, spacing="quadratic")
    if name == "dpmpp":
        assert matches_target(x), (x.mean(0), x.std(0))
    else:  # DDIM is first order: the same 10 steps leave a visible error that DPM-Solver++ does not
        assert (x.mean(0) - MU).abs().max() < TOL and (x.std(0) - SIGMA).abs().max() > TOL


def test_wrong_denoiser_fails_the_check():
    s = schedule()
    shifted = draw("dpmpp", 50, denoiser=gaussian_denoiser(s, mu=MU + 0.1))
    assert not matches_target(shifted) and ((shifted.mean(0) - MU).abs() > TOL).all()
    wide = draw("dpmpp", 50, denoiser=gaussian_denoiser(s, sigma=SIGMA * 1.3))
    assert not matches_target(wide)


def test_partial_strength_from_the_true_marginal():
    """Noise a data sample to timesteps(steps, strength)[0] and sample on: the target is kept (SDEdit path)."""
    s = schedule()
    g = torch.Generator().manual_seed(3)
    x0 = MU + SIGMA * torch.randn(N, 2, generator=g)
    ts = s.timesteps(20, strength=0.4)
    x = s.q_sample(x0, torch.full((N,), int(ts[0])), gaussian_noise((N, 2), g))
    out = samplers.dpmpp_2m(gaussian_denoiser(s), s, x, ts)
    assert matches_target(out), (out.mean(0), out.std(0))
    assert 0.2 < torch.corrcoef(torch.stack([x0[:, 0], out[:, 0]]))[0, 1] < 0.99  # related, not copied


def test_ddpm_posterior_matches_schedule_on_consecutive_steps():
    s = schedule()
    for t in (1, 2, 100, 999):
        c1, c2, var = samplers.ddpm_posterior(s.alphas_cumprod[t].item(), s.alphas_cumprod[t - 1].item())
        assert c1 == pytest.approx(s.posterior_mean_coef1[t].item(), rel=1e-9)
        assert c2 == pytest.approx(s.posterior_mean_coef2[t].item(), rel=1e-9)
        assert var == pytest.approx(s.posterior_variance[t].item(), rel=1e-9)
    assert samplers.ddpm_posterior(s.alphas_cumprod[0].item(), 1.0) == pytest.approx((1.0, 0.0, 0.0), abs=1e-12)


def test_ddim_eta_one_is_ddpm():
    s = schedule()
    ts, x = s.timesteps(20), torch.randn(64, 2)
    a = samplers.ddpm(gaussian_denoiser(s), s, x, ts, generator=torch.Generator().manual_seed(5))
    b = samplers.ddim(gaussian_denoiser(s), s, x, ts, eta=1.0, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, eta", [("ddpm", 0.0), ("ddim", 0.5), ("dpmpp", 0.0)])
def test_same_seed_same_sample_and_batch_independence(name, eta):
    s = schedule()
    den, ts = gaussian_denoiser(s), s.timesteps(8)

    def run(seeds: list[int]) -> torch.Tensor:
        gens = [torch.Generator().manual_seed(k) for k in seeds]
        x = gaussian_noise((len(seeds), 2), gens)
        return samplers.sample(name, den, s, x, ts, generator=gens, eta=eta)

    batch = run([11, 12, 13])
    assert torch.equal(batch, run([11, 12, 13]))
    assert torch.equal(batch[1], run([12])[0])
    assert torch.equal(batch[2], run([7, 13])[1])
    assert not torch.equal(batch[0], batch[1])


def _frame_correlation(noise: torch.Tensor) -> float:
    """Mean correlation between the noise of two different frames of one sample, over (b, c, f, h, w) noise."""
    flat = noise.permute(0, 1, 3, 4, 2).reshape(-1, noise.shape[2])  # (b c h w, f)
    corr = torch.corrcoef(flat.T)
    f = corr.shape[0]
    return float((corr.sum() - corr.diagonal().sum()) / (f * f - f))


def test_frame_noise_shares_a_part_of_each_frames_variance():
    """The mixed noise model: each frame N(0, I), any two frames of a sample correlated by ρ, samples
    independent; ρ = 0 is exactly the independent draws."""
    shape, seeds = (6, 3, 5, 16, 16), [1, 2, 3, 4, 5, 6]
    gens = lambda: [torch.Generator().manual_seed(k) for k in seeds]  # noqa: E731
    assert torch.equal(frame_noise(shape, gens(), correlation=0.0), gaussian_noise(shape, gens()))
    for rho in (0.3, 0.7):
        noise = frame_noise(shape, gens(), correlation=rho)
        assert noise.shape == shape
        assert abs(float(noise.std()) - 1.0) < 0.03 and abs(float(noise.mean())) < 0.03
        assert abs(_frame_correlation(noise) - rho) < 0.05, rho
        assert abs(float(torch.corrcoef(noise[:2].reshape(2, -1))[0, 1])) < 0.05  # two samples: independent
    assert abs(_frame_correlation(frame_noise(shape, gens())) - 0.0) < 0.05
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        frame_noise(shape, gens(), correlation=1.0)
    with pytest.raises(ValueError, match="needs a"):
        frame_noise((6, 3, 16, 16), gens(), correlation=0.5)


@pytest.mark.parametrize("name, eta", [("ddpm", 0.0), ("ddim", 1.0)])
def test_stochastic_samplers_add_noise_correlated_across_frames(name, eta):
    """The noise an ancestral step adds has the model's frame correlation, as its starting noise and its training
    noise do: from x = 0 with a denoiser that always says x̂0 = 0, the state the last step sees is added noise
    alone."""
    s = schedule()
    seen = []

    def denoiser(x_t, t):
        seen.append(x_t.clone())
        return torch.zeros_like(x_t)

    gens = [torch.Generator().manual_seed(k) for k in range(8)]
    samplers.sample(name, denoiser, s, torch.zeros(8, 3, 6, 8, 8), s.timesteps(10), generator=gens, eta=eta,
                    frame_correlation=0.6)
    assert float(seen[-1].abs().mean()) > 1e-3
    assert abs(_frame_correlation(seen[-1]) - 0.6) < 0.05


def test_samplers_keep_float32_any_shape_and_report_progress():
    s = schedule(prediction="v")
    calls = []

    def bf16_denoiser(x_t, t):
        assert x_t.dtype == torch.float32 and t.shape == (2,) and t.dtype == torch.long
        return (0.5 * x_t).bfloat16()

    x = torch.randn(2, 3, 2, 4, 4).bfloat16()
    for name in samplers.SAMPLERS:
        calls.clear()
        out = samplers.sample(name, bf16_denoiser, s, x, s.timesteps(5), generator=torch.Generator().manual_seed(0),
                              callback=lambda i, n: calls.append((i, n)))
        assert out.shape == x.shape and out.dtype == torch.float32
        assert calls == [(i, 5) for i in range(1, 6)]


def test_sampler_input_errors():
    s = schedule()
    with pytest.raises(UsageError, match="ddim, ddpm, dpmpp"):
        samplers.sample("euler", gaussian_denoiser(s), s, torch.zeros(1, 2), s.timesteps(3))
    with pytest.raises(ValueError, match="descending"):
        samplers.ddim(gaussian_denoiser(s), s, torch.zeros(1, 2), [10, 500])
    with pytest.raises(ValueError, match="3 generators for a batch of 2"):
        gaussian_noise((2, 4), [torch.Generator()] * 3)


# ---------------------------------------------------------------------------------------------------------------
# Guidance


def toy_model(calls: list):
    def model_fn(x, t, *, label, extra=None, flag=True):
        calls.append(x.shape[0])
        out = x * label[:, None] + t[:, None].float()
        return out if extra is None else out + extra
    return model_fn


def test_classifier_free_scale_one_is_conditional():
    calls: list = []
    x, t = torch.randn(3, 4), torch.tensor([5, 6, 7])
    cond, uncond = {"label": torch.tensor([1.0, 2.0, 3.0])}, {"label": torch.zeros(3)}
    out = classifier_free(toy_model(calls), cond, uncond, 1.0)(x, t)
    torch.testing.assert_close(out, x * cond["label"][:, None] + t[:, None].float())
    assert calls == [3]  # no unconditional pass


@pytest.mark.parametrize("scale", [0.0, 2.5, 7.0])
def test_classifier_free_combination(scale):
    calls: list = []
    model = toy_model(calls)
    x, t = torch.randn(3, 4), torch.tensor([5, 6, 7])
    cond = {"label": torch.tensor([1.0, 2.0, 3.0]), "extra": None, "flag": False}
    uncond = {"label": torch.tensor([-1.0, 0.5, 0.0]), "extra": None, "flag": False}  # e.g. a negative prompt
    guided = classifier_free(model, cond, uncond, scale)(x, t)
    assert calls == [6]  # one batched forward
    out_c, out_u = model(x, t, **cond), model(x, t, **uncond)
    torch.testing.assert_close(guided, out_u + scale * (out_c - out_u), rtol=0, atol=1e-6)


def test_classifier_free_rejects_unbatchable_kwargs():
    model = toy_model([])
    x, t = torch.randn(2, 4), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="same keys"):
        classifier_free(model, {"label": torch.ones(2)}, {}, 3.0)
    with pytest.raises(ValueError, match="'extra' is a tensor in one of cond/uncond but None"):
        classifier_free(model, {"label": torch.ones(2), "extra": torch.ones(2, 4)},
                        {"label": torch.ones(2), "extra": None}, 3.0)
    with pytest.raises(ValueError, match="'flag' differs"):
        classifier_free(model, {"label": torch.ones(2), "flag": True}, {"label": torch.ones(2), "flag": False}, 3.0)
    assert classifier_free(model, {"label": torch.ones(2)}, {"label": torch.ones(2)}, 2.0)(x, t).shape == (2, 4)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_x0_denoiser_for_each_parameterisation(prediction):
    s = schedule("cosine", prediction)
    x0, noise, t = torch.rand(4, 3) * 2 - 1, torch.randn(4, 3), torch.tensor([0, 100, 500, 900])
    x_t = s.q_sample(x0, t, noise)
    perfect = x0_denoiser(lambda x, tt: s.target(x0, noise, tt), s)
    torch.testing.assert_close(perfect(x_t, t), x0, rtol=0, atol=5e-4)
    clamped = x0_denoiser(lambda x, tt: s.target(3 * x0, noise, tt), s, clamp=1.0)(s.q_sample(3 * x0, t, noise), t)
    assert clamped.abs().max() <= 1.0 and clamped.dtype == torch.float32

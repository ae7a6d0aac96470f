"""Gaussian diffusion: noise schedules (schedule.py), samplers over a denoiser (samplers.py) and the
parameterisation and classifier-free guidance wrappers that turn a network into a denoiser (guidance.py)."""

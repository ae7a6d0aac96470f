"""Converting other tools' checkpoints into mav's networks (`mav import`). Each converter
maps names and layouts only: the networks are the same, so a converted model computes what the original does,
and the tests check that against the original implementation."""

# `mav import`'s default source of C_y's image tower: CLIP ViT-L/14's, in the image encoder of Karlo's
# image-variation model (kept here, torch-free, for the command line)
IMAGE_ENCODER = "kakaobrain/karlo-v1-alpha-image-variations"

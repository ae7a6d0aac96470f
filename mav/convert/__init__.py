"""Converting other tools' checkpoints into mav's networks (the start of `mav import`, issue 13). Each converter
maps names and layouts only: the networks are the same, so a converted model computes what the original does,
and the tests check that against the original implementation."""

"""The Typer app and the option types its commands share (huggingface_hub's CLI style: one definition each)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="mav",
    help="Make-A-Video: text-to-video without text-video data. Every command runs on the embedded default model "
         "unless --model names a registry name, a model folder or a hub id owner/name[@revision].",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# ---------------------------------------------------------------------------------------------------------------
# Shared option types

ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Registry name, model folder or hub id "
                                                 "owner/name[@revision]. Default: the embedded model.",
                                                 envvar="MAV_MODEL")]
RevisionOpt = Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit) to use.")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Never touch the network; hub models must be cached.")]
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N", envvar="MAV_DEVICE")]
DtypeOpt = Annotated[str, typer.Option(help="fp32 | bf16 | fp16 (fp16 on CUDA only)")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Seed in 0…2³²−1 (prompt i uses seed+i). Default: random, "
                                                "and reported.")]
StepsOpt = Annotated[Optional[str], typer.Option(help="Sampling steps: N for every stage, or per stage as "
                                                 "'decoder=30,sr_low=10'.")]
GuidanceOpt = Annotated[Optional[str], typer.Option("--guidance-scale", "-g", help="Classifier-free guidance: G "
                                                    "for P and D^t, or per stage as 'prior=2,decoder=5'.")]
SamplerOpt = Annotated[Optional[str], typer.Option(help="ddim | ddpm | dpmpp (default: the model's).")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", help="Output file (.mp4 .webm .gif) or folder "
                                                  "of PNG frames (ending in /). Fields: {index} {seed} {slug}.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per result on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress; print only the output paths.")]
CompileOpt = Annotated[bool, typer.Option(
    "--compile", help="torch.compile the denoisers: faster steps once compiled (≈1.3× per UNet step on a CPU), "
                      "but compiling takes minutes, so it pays off only over many videos (batch jobs).")]
FrameChunkOpt = Annotated[int, typer.Option(
    min=0, help="Run the UNets' spatial layers N frames at a time: less memory for long or large videos, the same "
                "result, somewhat slower (0: all frames at once).")]
CacheOpt = Annotated[Optional[str], typer.Option(help="Hub cache folder (default: huggingface_hub's).")]


@app.callback()
def _root() -> None:
    """Make-A-Video from the command line."""

"""`mav eval`'s tables: the dict `evaluate` returns, one rich table per section, on stdout."""

from __future__ import annotations

from mav.eval.metrics import ATTRIBUTES


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}{unit}"


def print_report(report: dict, console=None) -> None:
    """Print every section of an evaluation report; a skipped section says why."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False, markup=False)
    console.print(f"model {report['model']} · seed {report['seed']} · n {report['n']} per prompt kind · "
                  f"until {report['until']}")
    console.print(f"held-out split: {report['held_out']}", markup=False)

    # text faithfulness, full and partial prompts side by side
    faith = report["faithfulness"]
    if faith["full"].get("skipped"):
        console.print(f"text faithfulness: skipped ({faith['full']['skipped']})")
    else:
        video = report["video"]
        table = Table(title=f"text faithfulness (frames that match; videos of {video['frames']} frames at "
                            f"{video['size']}²)", title_justify="left")
        table.add_column("attribute")
        table.add_column("full prompts", justify="right")
        table.add_column("partial prompts", justify="right")
        table.add_column("partial frames scored", justify="right")
        for attr in (*ATTRIBUTES, "all"):
            table.add_row(attr, _pct(faith["full"]["accuracy"][attr]), _pct(faith["partial"]["accuracy"][attr]),
                          str(faith["partial"]["scored_frames"][attr]))
        console.print(table)
        console.print("  e.g. " + " | ".join(faith["full"]["examples"][:1] + faith["partial"]["examples"]))

    # presence and motion
    if report["presence"].get("skipped"):
        console.print(f"presence and motion: skipped ({report['presence']['skipped']})")
    else:
        pres, mot = report["presence"], report["motion"]
        table = Table("measure", "value", title="presence and motion (all generated videos)", title_justify="left")
        table.add_row("frames with exactly one object", _pct(pres["single_object"]))
        table.add_row("frames with an object", _pct(pres["object_found"]))
        frac = mot["mean_displacement_frac"]
        table.add_row("mean centroid displacement", f"{_num(mot['mean_displacement_px'], ' px/frame')} "
                                                    f"({_pct(frac)} of the side)")
        table.add_row("videos that move", _pct(mot["moving_fraction"]))
        table.add_row("smoothness |Δ²c|/|Δc| (0 = constant velocity)", _num(mot["smoothness"]))
        if mot.get("true_speed_fraction") is not None:
            lo, hi = mot["true_displacement_px"]
            table.add_row(f"videos moving like the world (mean step within ×1.5 of {lo:.1f}–{hi:.1f} px/frame)",
                          _pct(mot["true_speed_fraction"]))
            table.add_row(f"videos without a jump (no step longer than ×1.5 of {hi:.1f} px/frame)",
                          _pct(mot["steady_fraction"]))
        console.print(table)

    # ↑F
    interp = report["interpolation"]
    if interp.get("skipped"):
        console.print(f"↑F interpolation: skipped ({interp['skipped']})")
    else:
        table = Table("method", "PSNR of filled frames", title=f"↑F interpolation (×{interp['factor']}, "
                      f"{interp['frames']} frames at {interp['size']}², {interp['fps']:g} fps)", title_justify="left")
        table.add_row("↑F", _num(interp["psnr"], " dB"))
        table.add_row("linear blend", _num(interp["psnr_linear"], " dB"))
        console.print(table)

    # SR^t_l and SR_h
    table = Table("stage", "resolution", "PSNR", "bicubic PSNR", title="super-resolution", title_justify="left")
    for stage, label in (("sr_low", "SR^t_l"), ("sr_high", "SR_h")):
        sr = report["super_resolution"][stage]
        if sr.get("skipped"):
            table.add_row(label, f"skipped ({sr['skipped']})", "-", "-")
        else:
            table.add_row(label, f"{sr['from']}² → {sr['to']}²", _num(sr["psnr"], " dB"),
                          _num(sr["psnr_bicubic"], " dB"))
    console.print(table)

    # extrapolation
    ext = report["extrapolation"]
    if ext.get("skipped"):
        console.print(f"extrapolation: skipped ({ext['skipped']})")
    else:
        table = Table("measure", "value", title=f"extrapolation ({ext['known']} of {ext['frames']} frames known, "
                      f"{ext['size']}², {ext['fps']:g} fps)", title_justify="left")
        table.add_row("centroid error", f"{_num(ext['centroid_error_px'], ' px')} "
                                        f"({_pct(ext['centroid_error_frac'])} of the side)")
        table.add_row("holding the last frame", f"{_num(ext['hold_last_error_px'], ' px')} "
                                                f"({_pct(ext['hold_last_error_frac'])} of the side)")
        table.add_row("continued frames with an object", _pct(ext["object_found"]))
        table.add_row("continued frames keeping all attributes", _pct(ext["attributes_kept"]))
        console.print(table)

    # timing
    timing = report["timing"]
    table = Table("what", "seconds", title="wall time", title_justify="left")
    for stage, seconds in timing["stages"].items():
        table.add_row(f"stage {stage} (sampling)", _num(seconds, digits=1))
    for section, seconds in timing["sections"].items():
        table.add_row(f"section {section}", _num(seconds, digits=1))
    if timing["seconds_per_video"] is not None:
        table.add_row("per generated video", _num(timing["seconds_per_video"], digits=2))
    table.add_row("total", _num(timing["total"], digits=1))
    console.print(table)


def print_gates(results, console=None) -> None:
    """One table of gate results: each figure beside its baseline and bar."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False, markup=False)
    table = Table(title="stage gates (held-out scenes)", title_justify="left")
    for column in ("gate", "figure", "model", "baseline", "bar", "result", "seconds"):
        table.add_column(column, justify="right" if column in ("model", "baseline", "seconds") else "left")
    for r in results:
        for i, name in enumerate(r.figures):
            table.add_row(r.gate if i == 0 else "", name, _gate_num(r.figures[name]), _gate_num(r.baselines[name]),
                          r.bars[name], "pass" if r.checks[name] else "FAIL", f"{r.seconds:.0f}" if i == 0 else "")
    console.print(table)


def _gate_num(x: float | None) -> str:
    return "-" if x is None else (f"{x:.3f}" if abs(x) < 2 else f"{x:.2f}")

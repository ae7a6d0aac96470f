#!/usr/bin/env bash
# Rebuild the README gallery (examples/gallery/*.gif) from the embedded default model, on the CPU.
# Run from the repository root: bash examples/gallery.sh
set -euo pipefail
out=examples/gallery
mkdir -p "$out"
mav generate "a large red circle on a blue background" --seed 1 -o "$out/red-circle.gif" --overwrite -q
mav generate "a small yellow square on a purple background" --seed 2 -o "$out/yellow-square.gif" --overwrite -q
mav generate "a large white triangle on a green background" --seed 3 -o "$out/white-triangle.gif" --overwrite -q
mav generate "an orange circle" --seed 4 -o "$out/orange-circle.gif" --overwrite -q
mav generate "a large red circle on a blue background" --seed 1 --until decoder -o "$out/red-circle-base.gif" \
    --overwrite -q

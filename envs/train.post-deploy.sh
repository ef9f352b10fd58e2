#!/usr/bin/env bash
# Snakemake runs this inside the new conda environment, from the directory it was started in (the
# checkout): the rules call the `bslr` command of this checkout's package. It is installed as a copy, not
# in editable mode, so that two checkouts sharing a conda prefix do not share one live package; the env
# file names the bslr version, so that another version gets an environment of its own.
set -euo pipefail
python -m pip install --no-deps .

#!/usr/bin/env bash
# Snakemake runs this inside the new conda environment, from the directory it was started in (the
# checkout): the rules call the `bslr` command of this checkout's package.
set -euo pipefail
python -m pip install --no-deps --editable .

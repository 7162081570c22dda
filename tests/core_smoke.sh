#!/usr/bin/env bash
# The torch-free install runs the main job (`make run`) on a few subnets.
#
#   bash tests/core_smoke.sh VENV
#
# VENV holds `pip install 'compofa[report]'` and nothing else (`make core-smoke`
# sets it up). The commands run in a temporary folder, outside the source tree,
# so the installed package is what runs; they are the main job's, with fewer
# subnets, rounds and report generations so the check takes seconds, and the
# search runs on a table the shipped LUT fills whole.
set -euo pipefail

venv=$(cd "${1:?usage: core_smoke.sh VENV}" && pwd)
python=$venv/bin/python
compofa=$venv/bin/compofa

if "$python" -c "import torch" 2>/dev/null; then
    echo "core smoke: torch is importable in $venv, so this check would prove nothing; use a venv with only the core install" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

"$compofa" --version
# ONNX Runtime on a few subnets: graphs with seeded weights, the profiler, the store
"$compofa" profile --space compofa --device onnxruntime --resolution 224 --table latency.db --limit 5 \
    --min-rounds 2 --max-rounds 3 --round-seconds 0.1 --quiet
"$compofa" table show latency.db --bucket auto
# a table search needs every subnet: the shipped lookup table estimates all 243 in seconds
"$compofa" profile --space compofa --device lut:note10 --table lut.db --quiet
"$compofa" search --space compofa --latency table:lut.db --target 25%,50%,75% -o search.json
"$compofa" search --space compofa --latency lut:note10 --target 25%
"$compofa" report --table latency.db --table lut.db -o report --per-bucket 5 --generations 20 --quiet

test -s search.json || { echo "core smoke: search wrote no search.json" >&2; exit 1; }
test -s report/index.html || { echo "core smoke: report wrote no report/index.html" >&2; exit 1; }
echo "core smoke: the main job ran without torch"

#!/usr/bin/env bash
# Bundles the Python reference implementations (diffusers and its pure-Python dependencies) into
# .ref/py (git-ignored) so GPU machines, which have torch but no network, can run the reference
# side of benchmarks and fixture generators: carry `.ref` and set PYTHONPATH=.ref/py there.
# Needs a local Python environment with diffusers installed (pip install diffusers).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${T4G_REF_PYTHON:-$HOME/.cache/t4g/venv-ref/bin/python}
site=$("$PY" -c "import diffusers, os; print(os.path.dirname(os.path.dirname(diffusers.__file__)))")
rm -rf .ref/py && mkdir -p .ref/py
for p in diffusers importlib_metadata zipp; do cp -r "$site/$p" .ref/py/; done
find .ref -name __pycache__ -type d -prune -exec rm -rf {} +
"$PY" -c "import diffusers; print('bundled diffusers', diffusers.__version__)"
du -sh .ref

#!/usr/bin/env bash
# Type-check the package `edgedepth` as it is installed: the core plus the stage folders that
# pyproject.toml's package-dir maps into it (export/verify.py is edgedepth.export.verify).
#
# Why a link tree: mypy names a module after its folder, so it would see export/verify.py as
# `export.verify` (the bare name ruff bans), and the editable install reaches the stage folders
# through an import hook that mypy does not run. build/typecheck/edgedepth/ holds one symbolic link
# per core entry and one per stage folder, rebuilt on every run (new files need no step); mypy reads
# it through mypy_path, and the paths it prints are turned back into the repository's own.
# Usage: PY=.venv/bin/python bash scripts/typecheck.sh   (settings: [tool.mypy] in pyproject.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
TREE=build/typecheck/edgedepth

# A fresh clone has neither the virtualenv nor build/: say how to get mypy instead of a traceback.
if ! "$PY" -c "import mypy" 2>/dev/null; then
    echo "typecheck: no mypy in $PY: run 'make install' (the dev extra; mypy needs Python 3.10+)" >&2
    exit 1
fi

# The stage folders that package-dir maps directly under edgedepth (their subpackages come along).
STAGES=$("$PY" - <<'PY'
try:
    import tomllib
except ImportError:  # Python 3.10: mypy brings tomli
    import tomli as tomllib
with open("pyproject.toml", "rb") as f:
    dirs = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
print(" ".join(d for p, d in dirs.items() if p.count(".") == 1 and p == "edgedepth." + d))
PY
)

rm -rf build/typecheck
mkdir -p "$TREE"
for entry in edgedepth/*; do
    case "$entry" in *__pycache__) continue ;; esac
    ln -s "../../../$entry" "$TREE/$(basename "$entry")"
done
for folder in $STAGES; do
    ln -s "../../../$folder" "$TREE/$folder"
done

# Report paths as the repository has them: build/typecheck/edgedepth/export/x.py -> export/x.py.
sed_args=(-e "s#^$TREE/\\([a-z_]*\\.py\\)#edgedepth/\\1#" -e "s#^$TREE/trt/#edgedepth/trt/#")
for folder in $STAGES; do
    sed_args+=(-e "s#^$TREE/$folder/#$folder/#")
done
"$PY" -m mypy 2>&1 | sed "${sed_args[@]}"

#!/usr/bin/env python3
"""Turn onnx-tensorrt ``docs/operators.md`` tables into one JSON file, keyed by TensorRT generation.

Usage::

    python scripts/extract_trt_operator_tables.py OUT.json GEN=FILE.md[@SOURCE] [GEN=FILE.md[@SOURCE] ...]

``GEN`` is the key in the output (``"10.3"``), ``FILE.md`` the markdown file, and the optional
``@SOURCE`` free text saying where the file came from (default: the file path). The file path
must not contain ``@``; everything after the first ``@`` is the source text.

For each generation the JSON holds::

    {"source": str, "header_version": str|None, "min_opset": int|None, "max_opset": int|None,
     "data_types": [str, ...],
     "operators": {"Conv": {"supported": bool, "types": ["FP32", ...], "restrictions": str}, ...}}

* ``min_opset``/``max_opset`` come from the sentence at the top: "supports operators up to
  Opset 17" gives ``null``/17, "inclusive range of opset 9 to opset 20" gives 9/20.
* ``header_version`` is the TensorRT version that sentence names (the 10.1-GA file still says 10.0).
* ``types`` are split on commas and blanks, empty entries dropped (10.0 has ``INT64, , UINT8``),
  and the known typo ``INF64`` read as ``INT64``.
  A third cell that is not a type list (``DynamicQuantizeLinear | N | Not supported. ...``) is
  taken as the restriction text.
* ``restrictions`` is the cell text as written (markdown, ``<br />`` kept), stripped.

The package data ``export/data/tensorrt_onnx_operators.json`` is made, from the repository root, by::

    S=../shared/reference/onnx-tensorrt-operators D=export/data/onnx-tensorrt-operators
    T=onnx/onnx-tensorrt
    python scripts/extract_trt_operator_tables.py export/data/tensorrt_onnx_operators.json \\
      "8.5=$S/8.5.md@$T@fdeeaca87ad2eef316aafb016e1822502f383eea:docs/operators.md (branch 8.5-GA)" \\
      "8.6=$S/8.6.md@$T@ee0b139bc68567a89618c1d84dcd461cc144aad4:docs/operators.md (branch 8.6-GA)" \\
      "10.0=$S/10.0.md@$T@73f629e04a68765647010b98dd94257282d05d11:docs/operators.md (branch 10.0-GA)" \\
      "10.1=$S/10.1.md@$T@96e781103cfc4adf4a6bb557e94bac8e693f6f4c:docs/operators.md (branch 10.1-GA)" \\
      "10.6=$D/10.6.md@$T@0137504e2b25fe5253bd85d26b073378fb67805b:docs/operators.md" \\
      "10.14=$D/10.14.md@$T@c72727708d4ed8a379c04c4ea235c157ce9c3870:docs/operators.md (NVIDIA/TensorRT v10.14 parsers/onnx)" \\
      "10.15=$D/10.15.md@$T@fa5aa9f61e7781d2ca8f5351d42c1f19525a6124:docs/operators.md (NVIDIA/TensorRT v10.15 parsers/onnx)" \\
      "10.16=$D/10.16.md@$T@6bde6596eca84abf9afe9b4d21c18c32800fd3ad:docs/operators.md (NVIDIA/TensorRT v10.16 parsers/onnx)" \\
      "11.1=$D/11.1.md@$T@7c51a63a719180eb5160c874c111746f3fb46a6b:docs/operators.md (NVIDIA/TensorRT v11.1 parsers/onnx)"

(``../shared`` sits beside the repository; the later files are in the repository.)
"""  # noqa: E501 - the command above is quoted verbatim, one source a line
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

#: Spelling slips in the upstream tables, read as the type they mean.
TYPE_ALIASES = {"INF64": "INT64"}
_TYPE_TOKEN = re.compile(r"^[A-Z][A-Z0-9]*$")
_RANGE = re.compile(
    r"TensorRT\s+([0-9.]+)\s+supports operators in the inclusive range of opset\s+(\d+)\s+to opset\s+(\d+)", re.I
)
_UP_TO = re.compile(r"TensorRT\s+([0-9.]+)\s+supports operators up to opset\s+(\d+)", re.I)
_DATA_TYPES = re.compile(r"TensorRT supports the following ONNX data types:\s*(.+)")


def parse_opsets(text: str) -> Tuple[Optional[str], Optional[int], Optional[int]]:
    """``(header_version, min_opset, max_opset)`` from the sentence at the top of the file."""
    match = _RANGE.search(text)
    if match:
        return match.group(1).rstrip("."), int(match.group(2)), int(match.group(3))
    match = _UP_TO.search(text)
    if match:
        return match.group(1).rstrip("."), None, int(match.group(2))
    return None, None, None


def parse_data_types(text: str) -> List[str]:
    """The "TensorRT supports the following ONNX data types: A, B, and C" list."""
    match = _DATA_TYPES.search(text)
    if not match:
        return []
    items = re.split(r",|\band\b", match.group(1))
    return [item.strip().rstrip(".") for item in items if item.strip().rstrip(".")]


def parse_types(cell: str) -> Optional[List[str]]:
    """A "Supported Types" cell as a normalised list, or None when the cell is not a type list.

    Entries are split on commas and on blanks (10.0-GA writes ``INT64 BOOL`` for Split).
    """
    tokens = [TYPE_ALIASES.get(token, token) for token in re.split(r"[,\s]+", cell) if token]
    if not all(_TYPE_TOKEN.match(token) for token in tokens):
        return None
    return tokens


def parse_operators(text: str) -> Dict[str, Dict[str, object]]:
    """Rows of the operator table: ``{op: {"supported", "types", "restrictions"}}``."""
    operators: Dict[str, Dict[str, object]] = {}
    columns: List[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("|"):
            if columns and operators:
                break  # the table has ended
            continue
        cells = [cell.strip() for cell in stripped.strip("|").split("|")]
        if not columns:
            if cells and cells[0].lower() in ("operator", "onnx operator"):
                columns = [cell.lower().rstrip("?") for cell in cells]
            continue
        if set(stripped) <= set("|-:+ "):
            continue  # separator row
        row = dict(zip(columns, cells))
        name = cells[0]
        supported = row.get("supported", "").upper().startswith("Y")
        types_cell = row.get("supported types", "")
        restrictions = row.get("restrictions", row.get("notes", ""))
        types = parse_types(types_cell)
        if types is None:  # text where the types belong, e.g. "| N | Not supported. ..."
            restrictions = " ".join(part for part in (types_cell, restrictions) if part)
            types = []
        extra = cells[len(columns):]  # a stray cell past the last column
        if any(extra):
            restrictions = " | ".join(part for part in [restrictions, *extra] if part)
        operators[name] = {"supported": supported, "types": types, "restrictions": restrictions.strip()}
    return operators


def parse_file(path: Path, source: str) -> Dict[str, object]:
    """One generation's record from one ``operators.md``."""
    text = path.read_text(encoding="utf-8")
    header_version, min_opset, max_opset = parse_opsets(text)
    operators = parse_operators(text)
    if not operators:
        raise ValueError(f"{path}: no operator table found")
    return {
        "source": source,
        "header_version": header_version,
        "min_opset": min_opset,
        "max_opset": max_opset,
        "data_types": parse_data_types(text),
        "operators": operators,
    }


def _version_key(gen: str) -> Tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in gen.split("."))


def main(argv: List[str]) -> int:
    if len(argv) < 2 or any("=" not in arg for arg in argv[1:]):
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    tables: Dict[str, Dict[str, object]] = {}
    for arg in argv[1:]:
        gen, spec = arg.split("=", 1)
        path, _, source = spec.partition("@")
        tables[gen] = parse_file(Path(path), source or path)
    ordered = {gen: tables[gen] for gen in sorted(tables, key=_version_key)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(ordered, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}: " + ", ".join(f"{gen} ({len(t['operators'])} ops)" for gen, t in ordered.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

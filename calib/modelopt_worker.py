"""Child process that runs NVIDIA ModelOpt's ONNX PTQ for :class:`~edgedepth.calib.quantizers.ModelOptQuantizer`.

ModelOpt patches ONNX Runtime's quantization modules process-wide when it quantizes, so it runs
here, not in the process that also uses ONNX Runtime's quantizer. Usage (internal):
``python -m edgedepth.calib.modelopt_worker JOB.json``; on failure the one-line reason goes to the
job's ``error_file`` and the exit status is 1.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    from edgedepth.calib.quantizers import run_modelopt_job

    args = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(args[0]).read_text())
    try:
        run_modelopt_job(job)
    except Exception as exc:  # ModelOpt raises many types; the parent needs the message
        Path(job["error_file"]).write_text(f"{type(exc).__name__}: {exc}".splitlines()[0])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

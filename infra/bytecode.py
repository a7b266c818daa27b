"""Ship bytecode in the deployment and layer zips.

Lambda's /var/task and /opt are read-only, so Python cannot cache what it compiles there: without
``.pyc`` files in the zips every cold start compiles boto3, botocore and the app again (about
0.3 s of CPU for botocore alone). ``unchecked-hash`` pycs are valid without comparing source
timestamps, which zips do not keep reliably. Compiled by the Python that packages, which is the
one chalice picks the Lambda runtime for.
"""
from __future__ import annotations

import py_compile
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

# Where each zip is unpacked on Lambda, for the file names in tracebacks.
MOUNTS = {"deployment.zip": "/var/task", "layer-deployment.zip": "/opt"}


def pyc_name(source: PurePosixPath) -> PurePosixPath:
    return source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"


def add_bytecode(zip_path: Path) -> int:
    """Rewrite ``zip_path`` with a ``.pyc`` beside every ``.py`` that compiles; returns how many."""
    mount = MOUNTS.get(zip_path.name, "/var/task")
    added = 0
    with tempfile.TemporaryDirectory() as scratch:
        rebuilt = Path(scratch) / zip_path.name
        with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as target:
            names = set(source.namelist())
            for info in source.infolist():
                data = source.read(info)
                target.writestr(info, data)
                path = PurePosixPath(info.filename)
                if path.suffix != ".py" or str(pyc_name(path)) in names:
                    continue
                src = Path(scratch) / "src.py"
                src.write_bytes(data)
                pyc = Path(scratch) / "out.pyc"
                try:
                    py_compile.compile(
                        str(src),
                        cfile=str(pyc),
                        dfile=f"{mount}/{path}",
                        doraise=True,
                        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
                    )
                except py_compile.PyCompileError:
                    continue  # e.g. a Python 2 file shipped as data: Lambda would not import it either
                entry = zipfile.ZipInfo(str(pyc_name(path)), date_time=info.date_time)
                entry.external_attr = 0o644 << 16
                target.writestr(entry, pyc.read_bytes(), zipfile.ZIP_DEFLATED)
                added += 1
        rebuilt.replace(zip_path)
    return added

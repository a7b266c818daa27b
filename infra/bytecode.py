"""Ship bytecode in the deployment and layer zips.

Lambda's /var/task and /opt are read-only, so Python cannot cache what it compiles there: without
``.pyc`` files in the zips every cold start compiles boto3, botocore and the app again (about
0.3 s of CPU for botocore alone). ``unchecked-hash`` pycs are valid without comparing source
timestamps, which zips do not keep reliably.

Bytecode belongs to one Python version (its magic number, and the ``cpython-313`` in its name):
what the builder's 3.11 compiles, a python3.13 runtime ignores. So the zips get bytecode compiled
by an interpreter of the runtime's own version (``interpreter_for``): the builder's when it
matches, else ``python3.X`` on PATH if it really is 3.X; with neither, ``make package`` ships none
and says so, and each cold start compiles what it imports.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Dict, Optional

# Where each zip is unpacked on Lambda, for the file names in tracebacks.
MOUNTS = {"deployment.zip": "/var/task", "layer-deployment.zip": "/opt"}


# Run by the target interpreter (-I: no site-packages, no PYTHON* variables): compiles each file
# under the root it is given, names each .pyc as that Python does, answers {source: pyc}.
_COMPILE = """
import importlib.util, json, py_compile, sys
job = json.load(sys.stdin)
done = {}
for source, shown in job["files"].items():
    path = job["root"] + "/" + source
    pyc = importlib.util.cache_from_source(path)
    try:
        py_compile.compile(path, cfile=pyc, dfile=shown, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except py_compile.PyCompileError:
        continue  # e.g. a Python 2 file shipped as data: Lambda would not import it either
    done[source] = pyc[len(job["root"]) + 1:]
json.dump(done, sys.stdout)
"""


def interpreter_for(runtime: str) -> Optional[str]:
    """An interpreter of ``runtime``'s Python version: this one, or ``pythonX.Y`` on PATH if it is X.Y."""
    version = runtime[len("python"):]
    if version == "%d.%d" % sys.version_info[:2]:
        return sys.executable
    found = shutil.which(runtime)
    if not found:
        return None
    try:
        probe = subprocess.run([found, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    # A pyenv shim for a version not selected exits non-zero; a misnamed link reports another version.
    return found if probe.returncode == 0 and probe.stdout.strip() == version else None


def add_bytecode(zip_path: Path, python: str = sys.executable) -> int:
    """Rewrite ``zip_path`` with a ``.pyc`` by ``python`` beside every ``.py`` that compiles; returns how many."""
    mount = MOUNTS.get(zip_path.name, "/var/task")
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "tree"
        with zipfile.ZipFile(zip_path) as source:
            sources = [info for info in source.infolist() if PurePosixPath(info.filename).suffix == ".py"]
            for info in sources:
                target = tree / PurePosixPath(info.filename)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(source.read(info))
        job = {"root": str(tree), "files": {info.filename: f"{mount}/{info.filename}" for info in sources}}
        result = subprocess.run([python, "-I", "-c", _COMPILE], input=json.dumps(job), capture_output=True,
                                text=True, check=True, timeout=1800)
        compiled: Dict[str, str] = json.loads(result.stdout)
        rebuilt = Path(scratch) / zip_path.name
        added = 0
        with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as target_zip:
            names = set(source.namelist())
            for info in source.infolist():
                target_zip.writestr(info, source.read(info))
                pyc = compiled.get(info.filename)
                if pyc is None or pyc in names:
                    continue
                entry = zipfile.ZipInfo(pyc, date_time=info.date_time)
                entry.external_attr = 0o644 << 16
                target_zip.writestr(entry, (tree / PurePosixPath(pyc)).read_bytes(), zipfile.ZIP_DEFLATED)
                added += 1
        rebuilt.replace(zip_path)
    return added

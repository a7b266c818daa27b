"""The deployment package: its size, and what each dependency adds to it.

The package comes from ``make package`` (``build/package/``) when the Makefile has that target,
else from ``chalice package`` into a temporary folder. With ``automatic_layer`` Chalice splits it
in two: ``deployment.zip`` (the app's code, one per function) and ``layer-deployment.zip`` (the
dependencies, a Lambda layer). Each file is charged to the distribution whose
``*.dist-info/RECORD`` lists it (the app's own files and the ``chalice`` runtime module Chalice
adds are named as such), and each distribution to the requirement in ``requirements.txt`` that
pulls it in (following the ``Requires-Dist`` that apply, between what the package holds).
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from email.parser import Parser
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set

from packaging.requirements import Requirement

from bench.stack import ROOT, clean_env

MAKE_DIR = ROOT / "build" / "package"
ZIPS = ("deployment.zip", "layer-deployment.zip")
_SITE = re.compile(r"^python/(?:lib/python3\.\d+/site-packages/)?")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def build_package(say: Callable[[str], None], use_make: bool = True) -> Dict[str, Any]:
    """Build the deployment package; returns its folder and how it was made."""
    has_target = use_make and subprocess.run(
        ["make", "-n", "package"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ).returncode == 0
    if has_target:
        # For this interpreter's version, not the default runtime's: the cold-start bench imports the
        # unpacked package with this interpreter, which only loads its own version's wheels and bytecode.
        runtime = "python%d.%d" % sys.version_info[:2]
        say(f"  make package RUNTIME={runtime}")
        done = subprocess.run(["make", "package", f"RUNTIME={runtime}"], cwd=ROOT, env=clean_env(),
                              capture_output=True, text=True)
        if done.returncode == 0 and (MAKE_DIR / ZIPS[0]).is_file():
            return {"dir": str(MAKE_DIR), "how": "make package"}
        say(f"  make package did not produce {MAKE_DIR.relative_to(ROOT)}/{ZIPS[0]} (exit {done.returncode}); "
            "using chalice package")
    out = Path(tempfile.mkdtemp(prefix="agentstream-bench-package-")) / "package"
    chalice = Path(sys.executable).with_name("chalice")
    say(f"  chalice package {out}")
    done = subprocess.run([str(chalice), "package", str(out)], cwd=ROOT, env=clean_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"chalice package failed: {done.stdout}{done.stderr}")
    return {"dir": str(out), "how": "chalice package"}


def _requirements() -> List[Requirement]:
    wanted = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            wanted.append(Requirement(line))
    return wanted


def _needed(requirement: Requirement, extras: Set[str]) -> bool:
    """Whether a ``Requires-Dist`` applies on Lambda's CPython given the extras asked for."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in (extras or {""}))


def analyse(zip_paths: List[str]) -> Dict[str, Any]:
    """Every file of the given zips charged to its distribution (paths as Lambda sees them)."""
    infos: List[Any] = []
    owner: Dict[str, str] = {}
    meta: Dict[str, Dict[str, Any]] = {}
    for zip_path in zip_paths:
        _read_zip(zip_path, infos, owner, meta)
    return _tally(zip_paths, infos, owner, meta)


def _read_zip(zip_path: str, infos: List[Any], owner: Dict[str, str], meta: Dict[str, Dict[str, Any]]) -> None:
    with zipfile.ZipFile(zip_path) as archive:
        names = {}  # path as Lambda sees it (a layer's python/... prefix dropped) -> name in the zip
        for info in archive.infolist():
            if not info.is_dir():
                short = _SITE.sub("", info.filename)
                names[short] = info.filename
                infos.append((short, info.compress_size, info.file_size))
        for short in list(names):
            match = re.match(r"^([^/]+)\.dist-info/RECORD$", short)
            if not match:
                continue
            metadata = Parser().parsestr(
                archive.read(names[f"{match.group(1)}.dist-info/METADATA"]).decode("utf-8", "replace"))
            name = _normalize(metadata["Name"])
            requires = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
            meta[name] = {"name": metadata["Name"], "version": metadata["Version"], "requires": requires}
            for row in archive.read(names[short]).decode("utf-8", "replace").splitlines():
                path = row.split(",", 1)[0]
                if path:
                    owner[path] = name
            owner.setdefault(short, name)


def _tally(zip_paths: List[str], infos: List[Any], owner: Dict[str, str], meta: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    zipped: Dict[str, int] = defaultdict(int)
    unzipped: Dict[str, int] = defaultdict(int)
    files: Dict[str, int] = defaultdict(int)
    for filename, compressed, size in infos:
        top = filename.split("/", 1)[0]
        if filename in owner:
            key = owner[filename]
        elif top in ("app.py", "chalicelib"):
            key = "(agentstream: app.py, chalicelib/)"
        elif top == "chalice":
            key = "(chalice runtime module)"
        else:
            key = "(other)"
        zipped[key] += compressed
        unzipped[key] += size
        files[key] += 1
    total = sum(Path(p).stat().st_size for p in zip_paths)
    present = set(meta)
    pulled_by: Dict[str, Set[str]] = defaultdict(set)
    for root in _requirements():
        root_name = _normalize(root.name)
        if root_name not in present:
            continue
        stack, seen = [(root_name, set(root.extras))], set()
        while stack:
            name, extras = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            pulled_by[name].add(meta[root_name]["name"])
            for dep in meta[name]["requires"]:
                if _normalize(dep.name) in present and _needed(dep, extras):
                    stack.append((_normalize(dep.name), set(dep.extras)))
    rows = []
    for key in sorted(zipped, key=lambda k: -zipped[k]):
        info = meta.get(key)
        rows.append({
            "dependency": info["name"] if info else key,
            "version": info["version"] if info else "",
            "pulled_in_by": ", ".join(sorted(pulled_by.get(key, ()))) if info else "",
            "files": files[key],
            "zipped_bytes": zipped[key],
            "unzipped_bytes": unzipped[key],
        })
    headers = total - sum(zipped.values())
    rows.append({"dependency": "(zip headers and directory)", "version": "", "pulled_in_by": "", "files": 0,
                 "zipped_bytes": headers, "unzipped_bytes": 0})
    by_requirement: Dict[str, int] = defaultdict(int)
    for key, size in zipped.items():
        for requirement in pulled_by.get(key, ()):
            by_requirement[requirement] += size
    return {
        "zip_bytes": total,
        "unzipped_bytes": sum(unzipped.values()),
        "files": len(infos),
        "rows": rows,
        "by_requirement": dict(by_requirement),
        "has_bytecode": any(name.endswith(".pyc") for name, _, _ in infos),
    }


def measure(say: Callable[[str], None], package_dir: Optional[str] = None, use_make: bool = True) -> Dict[str, Any]:
    made = {"dir": package_dir, "how": "given"} if package_dir else build_package(say, use_make)
    folder = Path(made["dir"])
    zips = {name: str(folder / name) for name in ZIPS if (folder / name).is_file()}
    if ZIPS[0] not in zips:
        raise RuntimeError(f"no {ZIPS[0]} in {folder}")
    result: Dict[str, Any] = {**made, "zips": {name: Path(path).stat().st_size for name, path in zips.items()}}
    result["function"] = analyse([zips[ZIPS[0]]])
    result["all"] = analyse(list(zips.values()))
    return result

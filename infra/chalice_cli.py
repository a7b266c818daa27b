"""The chalice CLI, packaging and deploying for a chosen Lambda runtime whatever Python runs it.

Chalice 1.34 has no setting for the runtime: ``Config.lambda_python_version`` is the version of
the interpreter running chalice (aws/chalice#1416 and #1707 ask for one; both open). So

    python infra/chalice_cli.py --runtime python3.13 <chalice arguments>

runs ``chalice.cli.main`` with Chalice's internals adjusted for that runtime (``patch_chalice``):

* ``Config.lambda_python_version`` is the runtime: the functions' and the layer's ``Runtime``,
  the layer's ``python/lib/python3.X/site-packages`` and the ABI of the wheels Chalice picks;
* the manylinux wheels Chalice asks pip for are that Python's (``--python-version`` beside
  Chalice's ``--abi``): without it pip matches tags for the builder's version, finds no
  ``cp313-cp313`` wheel of cffi when the builder is 3.11, and Chalice leaves cffi out;
* a dependency with no wheel for the runtime stops the packaging instead of Chalice's warning
  and a layer without it (which would fail at import on Lambda);
* Chalice's warning that the runtime is not the running Python's is silenced: that is the point.

``make package``/``make deploy`` run it through ``infra.stack.chalice_command``; ``RUNTIME=``
chooses (docs/deploy.md, "The Lambda runtime"). It imports nothing from this repository, so it
runs from any directory. pip still resolves ``requirements.txt``'s environment markers for the
builder's Python; tests/deploy checks that none of the pinned closure's markers differ.
"""
from __future__ import annotations

import sys
from typing import Any, List, Optional, Sequence, Tuple

# What agentstream packages for: Lambda runtimes on Amazon Linux 2023 that Chalice 1.34 maps to
# a wheel ABI and for which every compiled dependency in requirements.txt has a wheel.
RUNTIMES = ("python3.12", "python3.13", "python3.14")
DEFAULT_RUNTIME = "python3.13"
# Still accepted, with a warning: what this repository built with before RUNTIME existed.
DEPRECATED = {
    "python3.11": (
        "python3.11 (Amazon Linux 2) is deprecated on Lambda on 2027-06-30; creating functions on it is "
        "blocked from 2027-07-31 and updating them from 2027-08-31. Package for "
        f"{DEFAULT_RUNTIME} (the default) instead."
    ),
}


class UnsupportedRuntime(ValueError):
    """A runtime agentstream does not package for."""


def check_runtime(runtime: str) -> str:
    """``runtime`` if agentstream packages for it (deprecated ones included), else UnsupportedRuntime."""
    if runtime in RUNTIMES or runtime in DEPRECATED:
        return runtime
    raise UnsupportedRuntime(
        f"{runtime!r} is not a Lambda runtime agentstream packages for: choose one of {', '.join(RUNTIMES)} "
        f"(default {DEFAULT_RUNTIME}; {', '.join(DEPRECATED)} still works but is deprecated)"
    )


def python_version(runtime: str) -> str:
    """``python3.13`` -> ``3.13``."""
    return runtime[len("python"):]


def with_python_version(command: str, args: List[str], runtime: str) -> List[str]:
    """pip arguments for a wheel download by ABI, with the runtime's Python version added."""
    if command == "download" and "--abi" in args and "--python-version" not in args:
        return ["--python-version", python_version(runtime)] + list(args)
    return list(args)


def patch_chalice(runtime: str) -> None:
    """Make this process's Chalice package and deploy for ``runtime``."""
    from chalice.config import Config
    from chalice.deploy import packager, validate

    Config.lambda_python_version = property(lambda self: runtime)  # type: ignore[method-assign,assignment]
    # Chalice warns when the runtime is not the running Python's; here that is the point.
    validate.validate_python_version = lambda config, actual_py_version=None: None

    execute = packager.PipRunner._execute

    def _execute(self: Any, command: str, args: List[str], env_vars: Any = None, shim: Any = None) -> Tuple[int, bytes, bytes]:
        return execute(self, command, with_python_version(command, args, runtime), env_vars, shim)

    packager.PipRunner._execute = _execute  # type: ignore[method-assign]

    def _build_python_dependencies(self: Any, python_version: str, requirements_filepath: str, site_packages_dir: str) -> None:
        abi = self._RUNTIME_TO_ABI[python_version]
        try:
            self._dependency_builder.build_site_packages(abi, requirements_filepath, site_packages_dir)
        except packager.MissingDependencyError as exc:
            missing = ", ".join(sorted(str(package.identifier) for package in exc.missing))
            raise SystemExit(
                f"No {runtime} ({abi}) wheel for: {missing}. Pin versions that publish one, or choose another RUNTIME."
            ) from None

    packager.BaseLambdaDeploymentPackager._build_python_dependencies = (  # type: ignore[method-assign]
        _build_python_dependencies
    )


def split_runtime(argv: Sequence[str]) -> Tuple[str, List[str]]:
    """``--runtime X`` (or ``--runtime=X``) first, then chalice's own arguments."""
    args = list(argv)
    if args[:1] == ["--runtime"] and len(args) > 1:
        return args[1], args[2:]
    if args and args[0].startswith("--runtime="):
        return args[0].partition("=")[2], args[1:]
    return DEFAULT_RUNTIME, args


def main(argv: Optional[Sequence[str]] = None) -> int:
    runtime, chalice_args = split_runtime(sys.argv[1:] if argv is None else argv)
    try:
        check_runtime(runtime)
    except UnsupportedRuntime as exc:
        print(exc, file=sys.stderr)
        return 2
    if runtime in DEPRECATED:
        print(f"Warning: {DEPRECATED[runtime]}", file=sys.stderr)
    patch_chalice(runtime)
    from chalice.cli import main as chalice_main

    sys.argv = ["chalice", *chalice_args]
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main())

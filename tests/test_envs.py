"""The conda environments of the rules and pyproject.toml declare the same packages with the same bounds."""

import re
import tomllib

import yaml

from conftest import REPO

CONDA_NAMES = {"matplotlib-base": "matplotlib", "seaborn-base": "seaborn"}  # conda's names for PyPI's
OUTSIDE_JOBS = {"snakemake", "snakemake-executor-plugin-slurm", "pygments"}  # Snakemake, its SLURM plugin and --report


def requirement(text: str) -> tuple[str, str]:
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*((?:[<>=!~]=?|==)\s*\S+)?", text.strip())
    assert match, f"unreadable requirement {text!r}"
    name = match.group(1).lower().replace("_", "-")
    return CONDA_NAMES.get(name, name), (match.group(2) or "").replace(" ", "")


def environment(name: str) -> dict[str, str]:
    spec = yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text())
    packages = {}
    for entry in spec["dependencies"]:
        for text in entry["pip"] if isinstance(entry, dict) else [entry]:
            package, bound = requirement(text)
            if package not in ("python", "pip"):
                packages[package] = bound
    return packages


def test_every_environment_package_has_the_bound_of_pyproject():
    declared = dict(map(requirement, tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]))
    covered = set()
    for name in ("train", "analysis"):
        packages = environment(name)
        for package, bound in packages.items():
            assert declared.get(package) == bound, (
                f"envs/{name}.yaml: {package}{bound}, pyproject: {declared.get(package)}"
            )
        covered |= set(packages)
    assert covered == set(declared) - OUTSIDE_JOBS
    assert {"torch", "torchvision", "mnist1d"} <= set(environment("train"))
    assert "torch" not in environment("analysis")


def test_environments_name_the_bslr_version_they_install():
    """The post-deploy scripts install this checkout's bslr; the version in the env file keeps the
    environments of two versions apart (Snakemake keys an environment by its file's content)."""
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for name in ("train", "analysis"):
        assert (REPO / "envs" / f"{name}.yaml").read_text().startswith(f"# bslr {version} ")
        script = (REPO / "envs" / f"{name}.post-deploy.sh").read_text()
        assert "pip install --no-deps ." in script and "--editable" not in script

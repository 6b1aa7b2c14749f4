"""The package as users get it: a wheel, installed non-editable, run from outside the repository.

The repository keeps its top-level folders (``deepcuts/ pipelines/ models/ sql/``); pyproject.toml installs
them as one package, ``deepcuts`` (``package-dir``), with ``sql/`` as package data. The fast tests check
that configuration against the tree; the slow test builds the wheel, installs it into a fresh venv with
``constraints.txt`` (about a minute with pip's cache) and runs the CLI and the DAG files there, with no
checkout on ``sys.path``: what the Airflow image does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS["package-dir"]


def _package_folders() -> dict[str, Path]:
    """Every package in the tree: a folder under a ``package-dir`` root holding ``.py`` or ``.sql`` files."""
    found: dict[str, Path] = {}
    for name, folder in PACKAGE_DIR.items():
        root = REPO / folder
        for path in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
            if "__pycache__" in path.parts or not (any(path.glob("*.py")) or any(path.glob("*.sql"))):
                continue
            rel = path.relative_to(root).parts
            found.setdefault(".".join((name, *rel)), path)
    return found


def test_every_package_folder_is_configured_for_the_wheel() -> None:
    """A new sub-package (or SQL dialect folder) must be listed in pyproject.toml, or the wheel lacks it."""
    assert set(PACKAGE_DIR) == {"deepcuts", "deepcuts.pipelines", "deepcuts.models", "deepcuts.sql"}
    missing = sorted(set(_package_folders()) - set(SETUPTOOLS["packages"]))
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    stale = sorted(set(SETUPTOOLS["packages"]) - set(_package_folders()))
    assert not stale, f"listed in pyproject.toml but not in the tree: {stale}"
    assert SETUPTOOLS["package-data"] == {"*": ["*.sql"]}


def test_bare_imports_of_the_folders_fail_lint() -> None:
    """`import models` works from a checkout only; ruff's TID251 rejects it and accepts `deepcuts.models`."""
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip(f"ruff not installed next to {sys.executable}")

    def lint(source: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ruff), "check", "--select", "TID251", "--stdin-filename", "probe.py", "-"],
            input=source,
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
        )

    # (written so that the namespace rewrite of the imports leaves these strings alone)
    for bare in (
        "import models",
        "import pipelines as p",
        "from pipelines import storage",
        "from models import base",
    ):
        result = lint(bare + "\n")
        assert result.returncode == 1 and "TID251" in result.stdout, bare
    assert (
        lint("import deepcuts.models.reranking.rerank\nfrom deepcuts.pipelines import storage\n").returncode
        == 0
    )


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


#: Runs in the installed venv: the DAG files import, and every import inside their tasks resolves.
DAG_CHECK = """
import ast, importlib, json, sys
from pathlib import Path
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
imported = set()
for path in sorted(Path(sys.argv[1]).glob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deepcuts"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                getattr(module, alias.name)
            imported.add(node.module)
errors = {str(k): str(v)[-2000:] for k, v in bag.import_errors.items()}
print(json.dumps({"dags": sorted(bag.dag_ids), "errors": errors, "imports": sorted(imported)}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel built from a copy of the sources, installed non-editable into a fresh venv."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", PYPROJECT["project"]["readme"]):
        shutil.copy2(REPO / name, src / name)
    for folder in PACKAGE_DIR.values():
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPCUTS_", "AIRFLOW", "PYTHON"))}
    _run([*pip, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp / "dist"), str(src)], tmp, env)
    (wheel,) = (tmp / "dist").glob("deepcuts-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)
    # pip of this environment installs into the new one (--python): same pip version as `make install`
    target = ["--python", str(venv / "bin" / "python")]
    constraints = ["-c", str(REPO / "constraints.txt")]
    _run([*pip, *target, "install", "--quiet", *constraints, str(wheel)], tmp, env, timeout=1200)
    outside = tmp / "outside"  # the working directory: no checkout in it or above it
    outside.mkdir()
    return {"tmp": tmp, "wheel": wheel, "venv": venv, "outside": outside}


def _env(installed: dict[str, Path], home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPCUTS_", "AIRFLOW", "PYTHON"))}
    env["PATH"] = f"{installed['venv'] / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["DEEPCUTS_HOME"] = str(home)
    env["AIRFLOW_HOME"] = str(home / "airflow")
    return env | extra


@pytest.mark.slow
def test_wheel_holds_one_namespace_and_the_sql_files(installed: dict[str, Path]) -> None:
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("deepcuts-")}
    assert tops == {"deepcuts"}, f"the wheel installs more than the deepcuts package: {tops}"
    sql_files = {p.relative_to(REPO / "sql").as_posix() for p in (REPO / "sql").rglob("*.sql")}
    assert {n.removeprefix("deepcuts/sql/") for n in names if n.endswith(".sql")} == sql_files
    py_files = {
        f"{name.replace('.', '/')}/{p.name}" for name, d in _package_folders().items() for p in d.glob("*.py")
    }
    assert py_files <= set(names), sorted(py_files - set(names))


@pytest.mark.slow
def test_installed_package_imports_from_site_packages_only(installed: dict[str, Path]) -> None:
    probe = (
        "import importlib.util as u, json, deepcuts, deepcuts.pipelines.nightly\n"
        "import deepcuts.models.recommenders.registry\n"
        "from deepcuts.sql_files import read_sql\n"
        "print(json.dumps({'file': deepcuts.__file__, 'bare': [m for m in ('models', 'pipelines', 'sql')"
        " if u.find_spec(m)], 'schema': read_sql('sqlite', 'schema.sql')}))"
    )
    python = str(installed["venv"] / "bin" / "python")
    out = json.loads(
        _run([python, "-c", probe], installed["outside"], _env(installed, installed["tmp"] / "h0"))
    )
    assert Path(out["file"]).is_relative_to(installed["venv"]), out["file"]
    assert out["bare"] == [], f"generic top-level packages importable from the install: {out['bare']}"
    assert out["schema"] == (REPO / "sql" / "sqlite" / "schema.sql").read_text()


@pytest.mark.slow
@pytest.mark.postgres
def test_serving_init_runs_from_the_wheel(installed: dict[str, Path], postgres_url: str) -> None:
    import sqlalchemy as sa

    home = installed["tmp"] / "h1"
    out = _run(["deepcuts", "serving", "init"], installed["outside"], _env(installed, home))
    assert "serving schema ready on sqlite" in out
    assert (home / "serving" / "serving.db").is_file()

    env = _env(installed, home, DEEPCUTS_SERVING_URL=postgres_url)
    out = _run(["deepcuts", "serving", "init"], installed["outside"], env)
    assert "serving schema ready on postgresql" in out
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert "current_recommendations" in sa.inspect(conn).get_view_names()
    finally:
        engine.dispose()


@pytest.mark.slow
def test_one_tiny_night_runs_from_the_wheel(installed: dict[str, Path]) -> None:
    home = installed["tmp"] / "h2"
    out_json = installed["tmp"] / "sim.json"
    cmd = ["deepcuts", "simulate", "--days", "1", "--users", "60", "--items", "80", "--seed", "3"]
    _run([*cmd, "--out", str(out_json)], installed["outside"], _env(installed, home))
    (night,) = json.loads(out_json.read_text())["nights"]
    assert night["live_run_date"] == night["run_date"], "the night was not published"
    assert night["events"] > 0
    assert (home / "reports" / f"run_date={night['run_date']}" / "index.html").is_file()


@pytest.mark.slow
def test_dag_files_work_with_only_the_installed_package(installed: dict[str, Path]) -> None:
    dags = installed["tmp"] / "dags"
    shutil.copytree(REPO / "dags", dags, ignore=shutil.ignore_patterns("__pycache__"))
    python = str(installed["venv"] / "bin" / "python")
    env = _env(installed, installed["tmp"] / "h3", AIRFLOW__CORE__LOAD_EXAMPLES="False")
    report = json.loads(
        _run([python, "-c", DAG_CHECK, str(dags)], installed["outside"], env).splitlines()[-1]
    )
    assert report["errors"] == {}
    assert {"deepcuts_nightly", "deepcuts_reports"} <= set(report["dags"])
    assert {"deepcuts.pipelines.ingest", "deepcuts.pipelines.publish", "deepcuts.settings"} <= set(
        report["imports"]
    )

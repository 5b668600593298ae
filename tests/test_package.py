"""The package's shape: a public API, and imports that flow one way through its layers."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import jaxcnn

PACKAGE = Path(jaxcnn.__file__).parent
# jaxcnn's layers in import order (see jaxcnn/__init__.py): a module imports only its own layer or earlier ones.
LAYERS = [("errors", "paths", "config", "processes", "progress", "rundir", "compilation", "document", "probabilities"),
          ("data",), ("model",), ("training",), ("evaluation",), ("experiments",), ("report", "study"), ("cli", "__main__")]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def layer_of(module: str) -> str:
    return module.split(".")[1]


def jaxcnn_imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "jaxcnn":
            modules |= {f"jaxcnn.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxcnn."):
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names if alias.name.startswith("jaxcnn.")}
    return modules


def test_every_module_imports_only_its_layer_or_earlier_ones():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.name == "__init__.py" and relative.parent == Path("."):
            continue  # the package's API names modules of every layer, lazily
        own = relative.parts[0].removesuffix(".py")
        assert own in RANK, f"{relative}: not in a layer of tests/test_package.py"
        upward += [f"{relative} -> {m}" for m in jaxcnn_imports(path) if RANK[layer_of(m)] > RANK[own]]
    assert upward == []


def test_the_public_api_resolves_and_importing_the_package_stays_light():
    assert {name: getattr(jaxcnn, name) for name in jaxcnn.__all__}  # every name there, none missing
    assert jaxcnn.fit.__module__ == "jaxcnn.training.loop" and jaxcnn.__version__
    probe = "import sys, jaxcnn, jaxcnn.cli; print('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_a_source_checkout_imports_without_being_installed(tmp_path):
    """On a machine that runs the study from a copy of the tree (``PYTHONPATH``), no package metadata."""
    shutil.copytree(Path(jaxcnn.__file__).parent, tmp_path / "jaxcnn", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-I", "-S", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import jaxcnn; "
                           "print(jaxcnn.__version__)", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0+source"


MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_EXPERIMENT_PARAMETERS = 350, 60, 8


def test_modules_and_functions_stay_small():
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        if source.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(PACKAGE)}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                args = node.args
                count = len(args.posonlyargs + args.args + args.kwonlyargs) + bool(args.vararg) + bool(args.kwarg)
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {lines} lines")
                if "experiments" in path.parts and count > MAX_EXPERIMENT_PARAMETERS:
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {count} parameters")
    assert too_long == []

"""The house rules that code can check: layers, no import cycles, who imports torch.distributed,
what lies at the package root, small modules, faults that only report, callbacks that observe,
and an architecture page that names every package."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import grimp
import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "hpml_bench"
# What may lie at the package root: the ground every layer uses, and the entry points.
ROOT_MODULES = {"__init__", "__main__", "errors", "registry", "console", "started"}
MAX_LINES = 320  # "small modules (<= ~300 lines)"


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.fixture(scope="module")
def graph():
    sys.path.insert(0, str(ROOT / "src"))  # this checkout's package, whatever is installed
    return grimp.build_graph("hpml_bench", cache_dir=None)


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles_counting_imports_inside_functions(graph):
    # grimp reads every import statement, those inside functions too.
    assert ("hpml_bench.started" in graph.find_modules_directly_imported_by("hpml_bench")
            and "hpml_bench.train.config" in graph.find_modules_directly_imported_by("hpml_bench"))
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    graph = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    assert _cycles(graph) == []
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph) == [["p.a", "p.b", "p.c"]]


def _layer_contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return config["contracts"][0]


def test_layers_hold_and_name_every_package(tmp_path):
    from importlinter.cli import lint_imports

    named = {p for layer in _layer_contract()["layers"] for p in re.split(r"\s*[:|]\s*", layer)}
    packages = {f"hpml_bench.{p.stem if p.is_file() else p.name}" for p in PACKAGE.iterdir()
                if (p.is_dir() and (p / "__init__.py").is_file()) or (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))}
    assert packages - named == set(), "a package outside the layers of pyproject's [tool.importlinter]"
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_the_layer_contract_breaks_on_an_import_from_below(tmp_path, monkeypatch):
    """The same contract over a copy of the package with one upward import added fails."""
    import shutil

    from importlinter.cli import lint_imports

    copy = tmp_path / "src" / "hpml_bench"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    errors = copy / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _upward():\n    from hpml_bench.train import run  # noqa\n")
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    for name in [m for m in sys.modules if m == "hpml_bench" or m.startswith("hpml_bench.")]:
        monkeypatch.delitem(sys.modules, name)
    assert lint_imports(config_filename=str(tmp_path / "pyproject.toml"), no_cache=True) == 1


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield node, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node, [node.module] + [f"{node.module}.{a.name}" for a in node.names]


def test_only_strategies_import_torch_distributed():
    offenders = []
    for path in modules():
        if "strategies" in path.relative_to(PACKAGE).parts:
            continue
        for node, names in _imports(ast.parse(path.read_text())):
            if any(n == "torch.distributed" or n.startswith("torch.distributed.") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_the_root_holds_only_the_ground_and_the_entry_points():
    assert {p.stem for p in PACKAGE.glob("*.py")} <= ROOT_MODULES


def test_modules_are_small():
    big = [f"{p.relative_to(ROOT)} ({n} lines)" for p in modules()
           if (n := len(p.read_text().splitlines())) > MAX_LINES and p.name != "model_table.py"]  # generated
    assert big == []


def test_trainer_fit_fits_on_one_screen():
    tree = ast.parse((PACKAGE / "train" / "trainer.py").read_text())
    fit = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "fit")
    assert fit.end_lineno - fit.lineno + 1 <= 40


def test_imports_inside_functions_say_why():
    """An hpml import inside a function stays only where it keeps start-up fast (or breaks no
    cycle the layers allow): a comment on its line or the line above says so."""
    silent = []
    for path in modules():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and (sub.module or "").startswith("hpml_bench"):
                    here, above = lines[sub.lineno - 1], lines[sub.lineno - 2].strip()
                    if "#" not in here and not above.startswith("#"):
                        silent.append(f"{path.relative_to(ROOT)}:{sub.lineno}")
    assert silent == []


def _assigned_attributes(path: Path) -> list[tuple[int, str]]:
    """(line, `base.attr`) of every attribute assignment whose base is not `self`/`cls`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            for t in ast.walk(target):
                if isinstance(t, ast.Attribute) and not (isinstance(t.value, ast.Name) and t.value.id in ("self", "cls")):
                    found.append((node.lineno, ast.unparse(t)))
    return found


def test_fault_modules_set_no_other_objects_state():
    """faults/ detects and reports; the trainer and the strategy act on the report."""
    offenders = [f"{p.name}:{line} {name}" for p in sorted((PACKAGE / "faults").glob("*.py"))
                 for line, name in _assigned_attributes(p)]
    assert offenders == []


def test_callbacks_set_no_trainer_or_strategy_state():
    """Callbacks observe: they fill the epoch record they are handed, never the trainer's or
    the strategy's fields."""
    offenders = [f"{p.name}:{line} {name}" for p in sorted((PACKAGE / "callbacks").glob("*.py"))
                 for line, name in _assigned_attributes(p) if name.startswith(("trainer.", "strategy."))]
    assert offenders == []


def test_the_architecture_page_names_every_package():
    page = (ROOT / "docs" / "architecture.md").read_text()
    packages = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
    missing = [name for name in packages if f"{name}/" not in page]
    assert missing == []


def test_one_place_names_the_run_folders_files():
    """"checkpoints", "summary.json", "epochs.csv", ... are spelled in runfolder/ only."""
    names = ('"checkpoints"', '"summary.json"', '"epochs.csv"', '"ranks.csv"', '"config.yaml"', '"overrides.yaml"',
             '"last.pt"', '"best.pt"', '"model_source.json"', '"config_dir.txt"')
    elsewhere = ("runfolder", "pretrained.py")  # pretrained.py: torch.hub's own checkpoints/ folder
    offenders = [f"{p.relative_to(ROOT)}: {n}" for p in modules()
                 if not any(part in elsewhere for part in p.relative_to(PACKAGE).parts)
                 for n in names if n in p.read_text()]
    assert offenders == []

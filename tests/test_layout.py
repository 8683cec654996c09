"""The package's architecture, checked: rooms by job, arrows one way, no import loops.

Layers, lowest first; a module may import from its own room or from a lower layer, never from a
higher one. The core (one member's pure training) sits above runtime and imports nothing but
itself; everything about many members, rules, studies and reports builds on it.
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "lwi_jax")
CORE = ("train", "member", "optim", "losses", "metrics", "augment")
LAYERS = ("runtime", "core", "data", "models", "parallel", "rules", "report", "study")
MAX_LINES = 350  # a longer module states why at its top ("over 350 lines because ...")


def _modules() -> dict[str, str]:
  """Dotted module name -> file path, for every module of the package."""
  out = {}
  for root, _, files in os.walk(PACKAGE):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(root, f)
        rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
        out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
  return out


def _imports(path: str, modules) -> set[str]:
  """The package modules `path` imports (at any depth of the file: local imports count)."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      # `from pkg import sub` depends on the submodule; `from mod import name` on the module
      names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
               else node.module for a in node.names]
    else:
      continue
    found |= {n for n in names if n in modules and n != "lwi_jax"}
  return found


def _room(module: str) -> str:
  parts = module.split(".")
  if len(parts) == 1:
    return "package"
  return "core" if parts[1] in CORE else parts[1]


@pytest.fixture(scope="module")
def graph():
  modules = _modules()
  return {m: _imports(p, modules) for m, p in modules.items()}


def test_no_top_level_module_but_the_cores():
  top = {f[:-3] for f in os.listdir(PACKAGE) if f.endswith(".py")} - {"__init__"}
  assert top == set(CORE)
  rooms = {d for d in os.listdir(PACKAGE) if os.path.isdir(os.path.join(PACKAGE, d))
           and os.path.exists(os.path.join(PACKAGE, d, "__init__.py"))}
  assert rooms == set(LAYERS) - {"core"}


def test_imports_point_down_the_layers(graph):
  upward = [(m, d) for m, deps in graph.items() for d in deps
            if _room(m) != "package" and _room(d) != "package"
            and LAYERS.index(_room(d)) > LAYERS.index(_room(m))]
  assert upward == []


def test_no_import_loop(graph):
  state = {}

  def visit(m, path):
    state[m] = "open"
    for d in sorted(graph[m]):
      if state.get(d) == "open":
        raise AssertionError(f"import loop: {' -> '.join(path + [m, d])}")
      if d not in state:
        visit(d, path + [m])
    state[m] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m, [])


def test_long_modules_say_why():
  for module, path in _modules().items():
    text = open(path).read()
    if text.count("\n") > MAX_LINES:
      doc = ast.get_docstring(ast.parse(text)) or ""
      assert "over 350 lines because" in doc, f"{module}: {text.count(chr(10))} lines"


def test_the_layering_check_sees_an_upward_import(tmp_path):
  """The checks above can fail: a core module importing the study is reported."""
  bad = tmp_path / "bad.py"
  bad.write_text("from lwi_jax.study import study\n")
  modules = _modules()
  deps = _imports(str(bad), modules)
  assert deps == {"lwi_jax.study.study"}
  assert LAYERS.index(_room("lwi_jax.study.study")) > LAYERS.index(_room("lwi_jax.train"))

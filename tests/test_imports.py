"""The package's import graph: no cycle, and no import hidden in a function to dodge one.

Read with `ast` (nothing is imported), so a cycle fails here even when Python
would tolerate it at run time through a function-local import.
"""
import ast
import importlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

PACKAGE = "hyperprompt_jax"
ROOT = pathlib.Path(__file__).resolve().parents[1] / PACKAGE


def _modules():
  """`{dotted module name: path}` of every module of the package."""
  out = {}
  for path in sorted(ROOT.rglob("*.py")):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


def _resolve(name, modules):
  """The package module `name` (or its longest prefix that is one), or None."""
  while name:
    if name in modules:
      return name
    name = name.rpartition(".")[0]
  return None


def _imports(module, path, modules):
  """`[(imported module, lineno, function-local?)]` of the package modules `module` imports."""
  tree = ast.parse(path.read_text(), filename=str(path))
  is_package = path.name == "__init__.py"
  found = []

  def visit(node, local):
    for child in ast.iter_child_nodes(node):
      inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
      if isinstance(child, ast.Import):
        for alias in child.names:
          target = _resolve(alias.name, modules)
          if target:
            found.append((target, child.lineno, inner))
      elif isinstance(child, ast.ImportFrom):
        base = child.module or ""
        if child.level:  # relative import
          anchor = module.split(".") if is_package else module.split(".")[:-1]
          anchor = anchor[:len(anchor) - (child.level - 1)]
          base = ".".join(anchor + ([base] if base else []))
        for alias in child.names:
          # `from pkg import submodule` imports the submodule; otherwise the module itself.
          target = _resolve(f"{base}.{alias.name}", modules) if base else None
          if target != f"{base}.{alias.name}":
            target = _resolve(base, modules)
          if target:
            found.append((target, child.lineno, inner))
      visit(child, inner)

  visit(tree, False)
  return [(t, line, local) for t, line, local in found if t != module]


def _graph():
  modules = _modules()
  return modules, {m: _imports(m, p, modules) for m, p in modules.items()}


def _find_cycle(edges):
  """One cycle `[a, b, ..., a]` of the graph, or None (iterative DFS)."""
  state = {}
  for start in sorted(edges):
    if state.get(start):
      continue
    stack = [(start, iter(sorted({t for t, _, _ in edges[start]})))]
    path = [start]
    state[start] = 1  # on the current path
    while stack:
      node, children = stack[-1]
      child = next(children, None)
      if child is None:
        state[node] = 2  # done
        stack.pop()
        path.pop()
        continue
      if state.get(child) == 1:
        return path[path.index(child):] + [child]
      if not state.get(child):
        state[child] = 1
        path.append(child)
        stack.append((child, iter(sorted({t for t, _, _ in edges.get(child, ())}))))
  return None


def test_the_graph_sees_the_package():
  modules, edges = _graph()
  assert {"hyperprompt_jax.network", "hyperprompt_jax.formats.restore",
          "hyperprompt_jax.conditioning"} <= set(modules)
  # The Hugging Face format reads the shared tree helpers (and the scan layout), never the
  # t5x format or the format switch (that pair used to import each other).
  assert {"hyperprompt_jax.formats.scan", "hyperprompt_jax.formats.tree"} == {
      t for t, _, _ in edges["hyperprompt_jax.formats.hf"] if t.startswith(f"{PACKAGE}.formats")}


def test_no_import_cycle_in_the_package():
  _, edges = _graph()
  cycle = _find_cycle(edges)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_function_local_import_of_a_package_module():
  # With an acyclic graph a function-local import of the package is never needed to
  # break a cycle; they all sit at module level, where a reader finds them.
  modules, edges = _graph()
  local = [f"{os.path.relpath(modules[m], ROOT.parent)}:{line} imports {t}"
           for m, imports in sorted(edges.items()) for t, line, is_local in imports if is_local]
  assert not local, "function-local imports of the package:\n" + "\n".join(local)


def test_the_cycle_finder_finds_a_cycle():
  edges = {"a": [("b", 1, False)], "b": [("c", 2, True)], "c": [("a", 3, False)], "d": []}
  assert _find_cycle(edges) == ["a", "b", "c", "a"]
  assert _find_cycle({"a": [("b", 1, False)], "b": []}) is None


@pytest.mark.parametrize("old, new, names", [
    ("hyperprompt_jax.t5x_checkpoints", "hyperprompt_jax.formats.restore",
     ("restore_params", "load_params", "open_checkpoint")),
    ("hyperprompt_jax.t5x_checkpoints", "hyperprompt_jax.formats.t5x",
     ("save_orbax_checkpoint", "save_legacy_checkpoint")),
    ("hyperprompt_jax.t5x_checkpoints", "hyperprompt_jax.formats.tree",
     ("CheckpointError", "flatten", "read_config")),
])
def test_documented_old_paths_re_export(old, new, names):
  old_module, new_module = importlib.import_module(old), importlib.import_module(new)
  for name in names:
    assert getattr(old_module, name) is getattr(new_module, name)


def test_importing_the_library_registers_no_task():
  # The task package is imported by the launcher only because the gin configuration
  # names it (MIXTURE_OR_TASK_MODULE); the library never imports it, so importing any
  # library module registers nothing.
  names = sorted(_modules())
  code = "\n".join(
      ["import importlib, json, sys", "import seqio",
       f"for name in {names!r}:", "  importlib.import_module(name)",
       "print(json.dumps([sorted(seqio.TaskRegistry.names()),",
       "                  sorted(seqio.MixtureRegistry.names()), 'hyperprompt_tasks' in sys.modules]))"])
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=str(ROOT.parent), timeout=300, check=True).stdout
  tasks, mixtures, imported = json.loads(out.strip().splitlines()[-1])
  assert len(names) > 30
  assert (tasks, mixtures, imported) == ([], [], False)

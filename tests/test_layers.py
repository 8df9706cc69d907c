"""The package's layers: every import of a keras_edd module points down (docs/layout.md).

helpers (no TensorFlow) -> settings (no TensorFlow) -> data, models -> attacks -> defense
-> evaluation -> reporting -> runs -> cli -> bin. A module may import modules of its own
layer or of lower ones, never of a higher one, at module level or inside a function.
"""

import ast
import os
import subprocess
import sys

import pytest

from conftest import REPO

PACKAGE = os.path.join(REPO, "keras_edd")
LAYERS = (
    ("helpers", ("keras_edd", "keras_edd.validation", "keras_edd.progress", "keras_edd.files",
                 "keras_edd.formatting", "keras_edd.results_schema", "keras_edd.stats")),
    ("settings", ("keras_edd.setting_fields", "keras_edd.attack_settings",
                  "keras_edd.attack_registry", "keras_edd.config")),
    ("data and models", ("keras_edd.data", "keras_edd.models", "keras_edd.pretrained",
                         "keras_edd.distribute")),
    ("attacks", ("keras_edd.attacks",)),
    ("defense", ("keras_edd.defense",)),
    ("evaluation", ("keras_edd.evaluation",)),
    ("robustness", ("keras_edd.robustness",)),
    ("reporting", ("keras_edd.reporting",)),
    ("runs", ("keras_edd.runs", "keras_edd.presets")),
    ("cli", ("keras_edd.cli",)),
)
# Modules that must import without loading TensorFlow: the flags are parsed and every
# setting checked before TensorFlow starts (a bad flag fails in a fraction of a second).
LIGHT = ("keras_edd.config", "keras_edd.attack_registry", "keras_edd.files",
         "keras_edd.formatting", "keras_edd.results_schema", "keras_edd.stats",
         "keras_edd.reporting.readme_tables", "keras_edd.models", "keras_edd.pretrained",
         "keras_edd.data", "keras_edd.distribute", "keras_edd.cli.flag_groups",
         "keras_edd.cli.configs", "keras_edd.setting_fields", "keras_edd.presets",
         "keras_edd.runs.run_config")


def layer_of(module):
    """Index in LAYERS of a keras_edd module (its longest matching prefix)."""
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (index, prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/layout.md")
    return best[0]


def _is_module(name):
    path = os.path.join(REPO, *name.split("."))
    return os.path.isdir(path) or os.path.isfile(path + ".py")


def imported_modules(source):
    """(line, keras_edd module, inside a function) of every import in `source`."""
    tree = ast.parse(source)
    functions = [node for node in ast.walk(tree)
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inner = {id(n) for f in functions for n in ast.walk(f)}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" if _is_module(f"{node.module}.{alias.name}")
                     else node.module for alias in node.names]
        for name in names:
            if name == "keras_edd" or name.startswith("keras_edd."):
                yield node.lineno, name, id(node) in inner


def upward_imports(module, source):
    """The imports of `module` (its source text) that point to a higher layer."""
    own = layer_of(module)
    return [f"{module}:{line} imports {name} ({LAYERS[layer_of(name)][0]} is above "
            f"{LAYERS[own][0]})" for line, name, _ in imported_modules(source)
            if layer_of(name) > own]


def package_modules():
    for folder, _, names in os.walk(PACKAGE):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                yield module.removesuffix(".__init__"), path


def test_every_import_points_down():
    found = []
    for module, path in package_modules():
        with open(path) as f:
            found += upward_imports(module, f.read())
    assert not found, "\n".join(found)


def test_no_function_level_imports_of_the_package():
    """Imports of keras_edd modules sit at the top of the module, where a reader sees them."""
    found = []
    for module, path in package_modules():
        with open(path) as f:
            found += [f"{module}:{line} imports {name} inside a function"
                      for line, name, inside in imported_modules(f.read()) if inside]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("source, upward", [
    ("from keras_edd.runs import run_dirs\n", ["run_dirs"]),
    ("def f():\n    from keras_edd.reporting import markdown\n", ["markdown"]),
    ("import keras_edd.cli.configs\n", ["cli.configs"]),
    ("from keras_edd import validation, files\nfrom keras_edd.config import DATASETS\n", []),
])
def test_the_walk_finds_an_upward_import(source, upward):
    found = upward_imports("keras_edd.data", source)
    assert len(found) == len(upward)
    for message, name in zip(found, upward):
        assert name in message and "above data and models" in message


def test_every_module_is_in_a_layer():
    for module, _ in package_modules():
        layer_of(module)
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("keras_edd_other.x")


def test_flags_and_settings_load_without_tensorflow():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in LIGHT)
            + "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.split() == ["[]"]

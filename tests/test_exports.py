"""Tests for the public surface: `resourceloop/__init__.py` and the `__all__` of each public module.

After trio's ``test_exports.py`` and anyio's ``tests/test_all_attributes.py``: every public name
is exported once, from the module users import it from, and says so in ``__module__``.
"""

from __future__ import annotations
import __future__

import importlib
import pickle
import types
from collections import Counter

import pytest

import resourceloop
from resourceloop import _manager, _template, resources

#: What ``import resourceloop`` offers, as the package declares it; ``test_top_level_names``
#: checks it against what the package's namespace really holds.
TOP_LEVEL = frozenset(resourceloop.__all__)


def _public_namespace() -> set[str]:
    """Every public attribute of the package: not private, not a submodule, not ``annotations``
    (``from __future__ import annotations``)."""
    return {
        name
        for name, obj in vars(resourceloop).items()
        if not name.startswith("_")
        and not isinstance(obj, types.ModuleType)
        and obj is not __future__.annotations
    }


#: Every public module; each has an ``__all__``.
PUBLIC_MODULES = [
    "resourceloop",
    "resourceloop.resources",
    "resourceloop.queue",
    "resourceloop.sync",
    "resourceloop.warnings",
    "resourceloop.pytest_plugin",
    "resourceloop.contrib.aiohttp",
    "resourceloop.contrib.httpx",
    "resourceloop.contrib.redis",
    "resourceloop.contrib.asyncpg",
    "resourceloop.contrib.sqlalchemy",
]

#: Public-looking module attributes that are not API: pytest's hook functions and type variables.
_NOT_API = {"pytest_addoption", "pytest_configure", "T", "R"}


def _is_api_object(obj: object) -> bool:
    return isinstance(obj, (type, types.FunctionType))


def test_top_level_names() -> None:
    """`resourceloop.__all__` lists exactly the public names, each once, each present."""
    assert set(resourceloop.__all__) == _public_namespace() | {"__version__"}
    assert len(resourceloop.__all__) == len(set(resourceloop.__all__))
    for name in resourceloop.__all__:
        assert hasattr(resourceloop, name), name


@pytest.mark.parametrize("name", sorted(TOP_LEVEL - {"__version__"}))
def test_top_level_module_is_resourceloop(name: str) -> None:
    """Each public class and function of the package says it lives in `resourceloop`."""
    obj = getattr(resourceloop, name)
    if not _is_api_object(obj):  # the live views are instances: their class stays private
        assert type(obj).__module__.startswith("resourceloop.")
        return
    assert obj.__module__ == "resourceloop", f"{name}.__module__ is {obj.__module__}"
    assert f"{obj.__module__}.{obj.__qualname__}" == f"resourceloop.{name}" or name == (
        "resource_manager"
    )


def test_methods_follow_their_class() -> None:
    """The methods of a public class report the public module too (tracebacks, the reference)."""
    assert resourceloop.ResourceTemplate.acquire.__module__ == "resourceloop"
    assert resourceloop.ResourceManager.as_decorator.__func__.__module__ == "resourceloop"  # type: ignore[attr-defined]


def test_public_classes_pickle_by_their_public_path() -> None:
    """Pickle finds the classes where ``__module__`` says they are."""
    for cls in (resourceloop.ResourceTemplate, resourceloop.ResourceManager, resourceloop.Config):
        assert pickle.loads(pickle.dumps(cls)) is cls


def test_resource_manager_defined_once() -> None:
    """`resource_manager` is one object, the class itself, wherever it is imported from."""
    assert resourceloop.resource_manager is resourceloop.ResourceManager
    assert resources.resource_manager is _manager.resource_manager is resourceloop.ResourceManager
    assert resources.ResourceTemplate is _template.ResourceTemplate is resourceloop.ResourceTemplate


def test_resources_module_is_the_same_objects() -> None:
    """`resourceloop.resources` re-exports the package's objects, never copies of them."""
    for name in resources.__all__:
        assert getattr(resources, name) is getattr(resourceloop, name), name


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_matches_module(module_name: str) -> None:
    """`__all__` names each public thing the module defines, once, and only names that exist."""
    module = importlib.import_module(module_name)
    exported = list(module.__all__)
    assert [n for n, c in Counter(exported).items() if c > 1] == []
    for name in exported:
        assert hasattr(module, name), f"{module_name}.__all__ names missing {name}"
    defined_here = {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and name not in _NOT_API
        and _is_api_object(obj)
        and obj.__module__ == module_name
    }
    missing = defined_here - set(exported)
    assert not missing, f"public but not in __all__: {missing}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES[1:])
def test_submodule_objects_say_where_they_live(module_name: str) -> None:
    """Classes and functions of a public submodule report that module or, if shared, the package."""
    module = importlib.import_module(module_name)
    for name in module.__all__:
        obj = getattr(module, name)
        if _is_api_object(obj) and obj.__module__.startswith("resourceloop"):
            assert not obj.__module__.split(".")[-1].startswith("_"), f"{name}: {obj.__module__}"


def test_each_object_exported_under_one_name() -> None:
    """No public module exports one object under two names (an alias defined twice, say)."""
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        by_identity: dict[int, list[str]] = {}
        for name in module.__all__:
            obj = getattr(module, name)
            if _is_api_object(obj):
                by_identity.setdefault(id(obj), []).append(name)
        # resource_manager is Pyot's alias of ResourceManager, on purpose.
        allowed = {("ResourceManager", "resource_manager")}
        shared = [tuple(sorted(v)) for v in by_identity.values() if len(v) > 1]
        assert set(shared) <= allowed, f"{module_name}: {shared}"

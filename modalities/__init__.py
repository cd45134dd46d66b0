"""Modalities: raw data (ECG records, audio clips, images, arrays) -> windows for AGAD.

Every modality has the same interface (`Modality`): `load(path, **opts) -> Windows`,
`prepare(raw) -> model inputs`, `raw_shape`, `to_dict()` / `from_dict()` (docs/modalities.md).
The registry imports a modality's module only when asked for it, so ECG scoring does not
pull in torchaudio. Modalities of other packages join it by `register_modality` or by an
entry point in the group `agad_stream.modalities`, loaded only when its name is asked for.
"""

from __future__ import annotations

import importlib
import warnings
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .base import Modality, Windows, aggregate_scores, split_by_group

__all__ = [
    "ENTRY_POINT_GROUP",
    "Modality",
    "ModalityPluginError",
    "Windows",
    "aggregate_scores",
    "available_modalities",
    "get_modality",
    "load_modality",
    "register_modality",
    "split_by_group",
]

#: entry-point group through which installed packages offer modalities (name = "module:Class")
ENTRY_POINT_GROUP = "agad_stream.modalities"

_BUILT_IN: dict[str, str] = {
    "ecg": "modalities.ecg:ECGModality",
    "audio": "modalities.audio:AudioModality",
    "image": "modalities.image:ImageModality",
    "array": "modalities.arrays:ArrayModality",
}
#: modalities registered by code: a class, or "module:Class" imported when first asked for
_REGISTERED: dict[str, type[Modality] | str] = {}


class ModalityPluginError(ValueError):
    """A registered or installed modality that cannot be loaded or is not a proper `Modality`."""


def register_modality(name: str, modality: type[Modality] | str | None = None):
    """Register a `Modality` subclass (or "module:Class", imported when first asked for) under
    `name`; usable as ``@register_modality("accel")`` too. The class's `name` must be `name`,
    since `to_dict` writes it into modality.json and `load_modality` finds the class by it."""

    def add(target: type[Modality] | str) -> type[Modality] | str:
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ValueError(f"a modality name must be a non-empty string without spaces, got {name!r}")
        if name in _BUILT_IN:
            raise ValueError(f"modality {name!r} is built in ({_BUILT_IN[name]}); register yours under another name")
        if isinstance(target, str):
            _split_target(target, f"modality {name!r}")
        else:
            _check_class(name, target, "register_modality")
        known = _REGISTERED.get(name)
        if known is not None and known != target:
            raise ValueError(f"modality {name!r} is already registered as {_describe(known)}")
        installed = _entry_points().get(name)
        if installed:
            raise ValueError(f"modality {name!r} is already offered by the installed entry point {_describe_ep(installed[0])}")
        _REGISTERED[name] = target
        return target

    return add(modality) if modality is not None else add


def available_modalities() -> list[str]:
    """Built-in, registered and installed (entry-point) modality names; plug-ins are not imported."""
    return sorted({*_BUILT_IN, *_REGISTERED, *_entry_points()})


def get_modality(name: str, **settings: Any) -> Modality:
    """A modality by registry name, e.g. get_modality("ecg", ann="pvc")."""
    return _modality_class(name)(**settings)


def load_modality(d: dict[str, Any]) -> Modality:
    """Rebuild a modality from `Modality.to_dict()` (e.g. the JSON saved next to a model)."""
    if not isinstance(d, dict) or "name" not in d:
        raise ValueError(f"not a modality description (needs a 'name' key): {d!r}")
    return _modality_class(d["name"]).from_dict(d)


def _modality_class(name: str) -> type[Modality]:
    if not isinstance(name, str):
        raise ValueError(f"a modality name must be a string, got {name!r}")
    if name in _BUILT_IN:
        module, cls = _BUILT_IN[name].split(":")
        return getattr(importlib.import_module(module), cls)
    if name in _REGISTERED:
        target = _REGISTERED[name]
        if isinstance(target, type):
            return target
        return _check_class(name, _import_target(name, target), f"registered {target!r}")
    installed = _entry_points().get(name)
    if not installed:
        raise ValueError(f"unknown modality {name!r}; choose from {available_modalities()}")
    if len(installed) > 1:
        raise ModalityPluginError(f"modality {name!r} is offered by several installed entry points: "
                                  f"{', '.join(map(_describe_ep, installed))}; uninstall all but one")
    where = f"entry point {_describe_ep(installed[0])}"
    try:
        loaded = installed[0].load()
    except Exception as error:  # a broken plug-in must say which one, whatever it raised
        raise ModalityPluginError(f"modality {name!r}: {where} failed to load: "
                                  f"{type(error).__name__}: {error}") from error
    return _check_class(name, loaded, where)


def _entry_points() -> dict[str, list[EntryPoint]]:
    """Installed modality entry points by name (read afresh, so a package installed while a
    scorer runs is found at its next model load); those named like a built-in are ignored."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _BUILT_IN:
            warnings.warn(f"ignoring the modality entry point {_describe_ep(ep)}: {ep.name!r} is a built-in modality",
                          stacklevel=3)
            continue
        same = found.setdefault(ep.name, [])
        if all(other.value != ep.value for other in same):  # one package seen twice on the path is one plug-in
            same.append(ep)
    return found


def _check_class(name: str, cls: Any, where: str) -> type[Modality]:
    if not (isinstance(cls, type) and issubclass(cls, Modality)):
        raise ModalityPluginError(f"modality {name!r} ({where}) is {cls!r}, not a subclass of modalities.Modality")
    if cls.name != name:
        raise ModalityPluginError(f"modality {name!r} ({where}): {cls.__name__}.name is {cls.name!r}, "
                                  f"it must be {name!r} (the name saved in modality.json)")
    return cls


def _split_target(target: str, what: str) -> tuple[str, str]:
    module, _, attribute = target.partition(":")
    if not module or not attribute or ":" in attribute:
        raise ValueError(f"{what}: expected 'module:Class', got {target!r}")
    return module, attribute


def _import_target(name: str, target: str) -> Any:
    module, attribute = _split_target(target, f"modality {name!r}")
    try:
        return getattr(importlib.import_module(module), attribute)
    except Exception as error:
        raise ModalityPluginError(f"modality {name!r} (registered {target!r}) failed to load: "
                                  f"{type(error).__name__}: {error}") from error


def _describe(target: type[Modality] | str) -> str:
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def _describe_ep(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    source = f" of {dist.name} {dist.version}" if dist is not None else ""
    return f"'{ep.name} = {ep.value}'{source}"

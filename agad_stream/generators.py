"""Generators by name, so a modality picks one with a string and users can add their own.

A generator factory is called as ``factory(ndim, in_channels, spatial_shape, **options)``
and must return an ``nn.Module`` mapping x to a reconstruction of the same shape.
Ordinary ``nn.BatchNorm*`` layers inside it get AGAD's auxiliary BN automatically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from agad_stream.networks import EncoderDecoder, NestedUNet

GeneratorFactory = Callable[..., nn.Module]
_GENERATORS: dict[str, GeneratorFactory] = {}


def register_generator(name: str, factory: GeneratorFactory | None = None):
    """Register ``factory`` under ``name``; usable as ``@register_generator("mine")`` too."""

    def add(f: GeneratorFactory) -> GeneratorFactory:
        if not callable(f):
            raise TypeError(f"generator factory for {name!r} must be callable, got {type(f).__name__}")
        _GENERATORS[name] = f
        return f

    return add(factory) if factory is not None else add


def available_generators() -> list[str]:
    return sorted(_GENERATORS)


def build_generator(
    name: str, ndim: int, in_channels: int, spatial_shape: Sequence[int], **options
) -> nn.Module:
    if name not in _GENERATORS:
        raise ValueError(f"unknown generator {name!r}; registered: {', '.join(available_generators())}")
    return _GENERATORS[name](ndim, in_channels, tuple(spatial_shape), **options)


register_generator("naive", lambda ndim, c, shape, **kw: EncoderDecoder(ndim, c, shape, skip_connections=False, **kw))
register_generator("unet", lambda ndim, c, shape, **kw: EncoderDecoder(ndim, c, shape, skip_connections=True, **kw))
register_generator("unetpp", lambda ndim, c, shape, **kw: NestedUNet(ndim, c, shape, **kw))

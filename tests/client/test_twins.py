"""The sync and async halves of the client are written by hand, so this holds them equal: the same
public methods with the same parameters, the same public attributes, and a fork that carries every
setting its stream was made with (Stream.fork once dropped time_major; AsyncStream's did too).

Everything is read from the classes themselves, so a method, parameter or setting added to one
half only, or left out of fork(), fails here without anyone updating a list."""

from __future__ import annotations

import asyncio
import inspect

import numpy as np
import pytest

from lstmserve.client import AsyncClient, AsyncStream, Client, State, Stream

# The async half's names for the context-manager protocol, as the sync half's.
_ASYNC_DUNDERS = {"__aenter__": "__enter__", "__aexit__": "__exit__"}
_CONTEXT = {"__enter__", "__exit__"}


def _public(cls: type) -> dict[str, object]:
    """Public members of cls, with the async context-manager names read as the sync ones."""
    members = {}
    for name, member in inspect.getmembers(cls):
        name = _ASYNC_DUNDERS.get(name, name)
        if not name.startswith("_") or name in _CONTEXT:
            members[name] = member
    # object's own __exit__ does not exist; a class without a with-block has neither name.
    return members


def _parameters(function: object) -> list[tuple[str, object, object, object]]:
    """(name, kind, default, annotation) of each parameter, a type of the async half (`_AsyncSender`)
    read as the sync half's (`_Sender`); the return type may differ by half."""
    return [
        (p.name, p.kind, p.default, str(p.annotation).replace("Async", ""))
        for p in inspect.signature(function).parameters.values()  # type: ignore[arg-type]
    ]


def _instance_attributes(instance: object) -> set[str]:
    return {name for name in vars(instance) if not name.startswith("_")}


@pytest.mark.parametrize(("sync", "async_"), [(Client, AsyncClient), (Stream, AsyncStream)])
def test_the_two_halves_have_the_same_methods_and_parameters(sync, async_):
    mine, theirs = _public(sync), _public(async_)
    assert set(mine) == set(theirs), f"only in one half: {sorted(set(mine) ^ set(theirs))}"
    assert _CONTEXT <= set(mine), f"{sync.__name__} must work in a with block"
    for name in sorted(mine):
        if name in _CONTEXT:
            continue
        if isinstance(mine[name], property):
            assert isinstance(theirs[name], property), name
            continue
        assert callable(mine[name]) == callable(theirs[name]), name
        if callable(mine[name]):
            assert _parameters(mine[name]) == _parameters(theirs[name]), f"{sync.__name__}.{name}"
    assert _parameters(sync.__init__)[1:] == _parameters(async_.__init__)[1:]


def test_the_two_clients_hold_the_same_public_attributes():
    sync = Client("127.0.0.1:9", coalesce=True)  # a channel connects only when a call is made
    try:
        attributes = _instance_attributes(sync)
    finally:
        sync.close()

    async def async_attributes():
        async with AsyncClient("127.0.0.1:9", coalesce=True) as client:
            return _instance_attributes(client)

    assert attributes == asyncio.run(async_attributes())
    assert {"stub", "timeout", "metadata", "coalescer"} <= attributes  # the comparison compares something


# A value unlike the default for each setting a stream is made with. Which settings there are is read
# from the constructor: one added without a value here fails the first assertion below.
_STATE = State("0123456789abcdef", ((np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)),))
_NOT_DEFAULT = {
    "model": "chars",
    "version": 2,
    "state": _STATE,
    "bidi": True,
    "outputs": ["logits"],
    "state_every": 3,
    "time_major": True,
}


def _settings(cls: type) -> dict[str, inspect.Parameter]:
    """The constructor's parameters but the client: the settings a stream carries."""
    parameters = dict(inspect.signature(cls.__init__).parameters)
    del parameters["self"], parameters["client"]
    return parameters


@pytest.mark.parametrize("cls", [Stream, AsyncStream])
def test_fork_carries_every_setting_the_stream_was_made_with(cls):
    settings = _settings(cls)
    assert set(settings) == set(_NOT_DEFAULT), "give each new Stream setting a non-default value here"
    client = object()  # fork() only hands the client on: nothing is sent here
    stream = cls(client, **_NOT_DEFAULT)
    fork = stream.fork()
    plain = cls(client, "chars")
    assert type(fork) is cls and fork._client is client
    for name, parameter in settings.items():
        # The stream holds each setting under its parameter's name (outputs as it asks for them).
        assert getattr(fork, name) == getattr(stream, name), f"fork() dropped {name}"
        if parameter.default is not inspect.Parameter.empty:
            # ...and unlike a default stream's, so the line above tells a carried setting from a lost one.
            assert getattr(stream, name) != getattr(plain, name), name

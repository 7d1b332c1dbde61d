"""The sync and async halves of the client are written by hand, so this holds them equal, pair by
pair (Client/AsyncClient, Stream/AsyncStream, Generation/AsyncGeneration and the coalescers): the
same public methods and properties with the same parameters (names, kinds, defaults, annotations,
the async half's Awaitable/Async read as the sync half's), `async def` exactly where the async half
waits, the same settings carried, and a fork that carries every setting its stream was made with
(Stream.fork once dropped time_major; AsyncStream's did too).

Everything is read from the classes themselves, so a method, parameter or setting added to one half
only, or left out of fork(), fails here without anyone updating a list. What differs by design is
listed below, each with its reason."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Iterator

import numpy as np
import pytest

from lstmserve.client import AsyncClient, AsyncGeneration, AsyncStream, Client, Generation, State, Stream
from lstmserve.client.coalesce import AsyncCoalescer, ThreadCoalescer

PAIRS = [
    (Client, AsyncClient),
    (Stream, AsyncStream),
    (Generation, AsyncGeneration),
    (ThreadCoalescer, AsyncCoalescer),
]
_IDS = [sync.__name__ for sync, _ in PAIRS]

# The async half's names for the context-manager and iterator protocols, as the sync half's.
_ASYNC_DUNDERS = {"__aenter__": "__enter__", "__aexit__": "__exit__", "__aiter__": "__iter__"}
_DUNDERS = set(_ASYNC_DUNDERS.values())

# Methods of an async half that stay plain `def`: they wait for nothing (they make an object whose
# own methods wait, or only flag a call).
_STAYS_SYNC = {
    AsyncClient: {"stream", "generate"},
    AsyncStream: {"fork"},
    AsyncGeneration: {"cancel"},
    AsyncCoalescer: set(),
}
# Public members of one half only.
_ONE_HALF_ONLY = {
    # Its sender threads, shut down by Client.close(); AsyncCoalescer's drains are tasks of the loop,
    # and what they still send fails with the client's channel.
    ThreadCoalescer: {"close"},
}


def _public(cls: type) -> dict[str, object]:
    """Public members of cls, the async protocol names read as the sync ones."""
    members = {}
    for name, member in inspect.getmembers(cls):
        name = _ASYNC_DUNDERS.get(name, name)
        if (not name.startswith("_") or name in _DUNDERS) and member is not getattr(object, name, None):
            members[name] = member
    return members


def _as_sync(annotation: object) -> str:
    """An annotation as the sync half would write it: Awaitable[X] as X, AsyncStream as Stream,
    AsyncIterator as Iterator, `_AsyncSender` as `_Sender`."""
    text = str(annotation)
    while (match := re.search(r"Awaitable\[", text)) is not None:  # drop the wrapper and its bracket
        start, depth = match.end(), 1
        for end in range(start, len(text)):
            depth += {"[": 1, "]": -1}.get(text[end], 0)
            if depth == 0:
                break
        text = text[: match.start()] + text[start:end] + text[end + 1 :]
    return text.replace("Async", "").replace("Thread", "")


def _signature(function: object) -> list[tuple[str, str, object, str]]:
    """(name, kind, default, annotation) of each parameter, then the return annotation."""
    signature = inspect.signature(function)  # type: ignore[arg-type]
    parameters = [
        (p.name, p.kind.name, p.default, _as_sync(p.annotation)) for p in signature.parameters.values()
    ]
    return [*parameters, ("return", "", None, _as_sync(signature.return_annotation))]


def _waits(function: object) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)


def _differences(sync: type, async_: type) -> Iterator[str]:
    """Every way the two halves differ beyond what is listed above, one line each."""
    mine, theirs = _public(sync), _public(async_)
    only = _ONE_HALF_ONLY.get(sync, set()) | _ONE_HALF_ONLY.get(async_, set())
    for name in sorted((set(mine) ^ set(theirs)) - only):
        yield f"{name}: only in {sync.__name__ if name in mine else async_.__name__}"
    for name in sorted(only & set(mine) & set(theirs)):
        yield f"{name}: listed in _ONE_HALF_ONLY, but both halves have it now"
    for name in sorted(set(mine) & set(theirs)):
        here, there = mine[name], theirs[name]
        if isinstance(here, property) or isinstance(there, property):
            if not (isinstance(here, property) and isinstance(there, property)):
                yield f"{name}: a property in one half only"
            elif _signature(here.fget) != _signature(there.fget):
                ours, yours = inspect.signature(here.fget), inspect.signature(there.fget)
                yield f"{name}: the property's type differs: {ours} vs {yours}"
            continue
        if callable(here) != callable(there):
            yield f"{name}: callable in one half only"
            continue
        if not callable(here) or here is there:  # one method of a shared base: nothing to compare
            continue
        if _signature(here) != _signature(there):
            ours, yours = inspect.signature(here), inspect.signature(there)  # type: ignore[arg-type]
            yield f"{name}: {sync.__name__}{ours} vs {async_.__name__}{yours}"
        if _waits(here):
            yield f"{sync.__name__}.{name} is async in the sync half"
        stays = name in _STAYS_SYNC.get(async_, set())
        if _waits(there) == stays:
            expected = "def" if stays else "async def"
            yield f"{async_.__name__}.{name} should be `{expected}`"
    if _signature(sync.__init__) != _signature(async_.__init__):
        yield f"__init__: {inspect.signature(sync.__init__)} vs {inspect.signature(async_.__init__)}"


@pytest.mark.parametrize(("sync", "async_"), PAIRS, ids=_IDS)
def test_the_two_halves_have_the_same_methods_and_parameters(sync, async_):
    differences = list(_differences(sync, async_))
    assert not differences, f"{sync.__name__} and {async_.__name__} differ:\n" + "\n".join(differences)


def test_the_with_block_halves_have_both_ends():
    for sync, async_ in [(Client, AsyncClient), (Stream, AsyncStream)]:
        assert {"__enter__", "__exit__"} <= set(_public(sync)), f"{sync.__name__} must work in a with block"
        assert {"__enter__", "__exit__"} <= set(_public(async_)), f"{async_.__name__}: an async with block"


def test_the_comparison_compares_something():
    """A broken _public or _signature would pass every pair: they must see what differs."""

    class Sync:
        def run(self, steps: int = 1) -> Stream: ...

        def only_here(self) -> None: ...

    class Async:
        async def run(self, steps: int = 2) -> AsyncStream: ...

        def stays(self) -> None: ...

    found = list(_differences(Sync, Async))
    assert any(line.startswith("only_here: only in Sync") for line in found), found
    assert any(line.startswith("stays: only in Async") for line in found), found
    assert any(line.startswith("run: Sync") for line in found), found  # the default differs
    assert "Async.stays" not in "\n".join(found)  # only shared methods are held to async def
    assert (
        _as_sync("Callable[[pb.InferRequest], Awaitable[InferResult]]")
        == "Callable[[pb.InferRequest], InferResult]"
    )


# Each half made with the same non-default settings (no channel connects until a call is made).
def _clients() -> tuple[object, object]:
    settings = dict(timeout=7.0, max_message_bytes=1 << 20, token="t", coalesce=True)
    sync = Client("127.0.0.1:9", **settings)
    sync.close()

    async def made() -> AsyncClient:
        async with AsyncClient("127.0.0.1:9", **settings) as client:
            return client

    return sync, asyncio.run(made())


def _coalescers() -> tuple[object, object]:
    sync = ThreadCoalescer(lambda request: None, max_rows=7)  # type: ignore[arg-type, return-value]
    sync.close()
    return sync, AsyncCoalescer(lambda request: None, max_rows=7)  # type: ignore[arg-type, return-value]


_STATE = State("0123456789abcdef", ((np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)),))
# A value unlike the default for each setting a stream is made with. Which settings there are is read
# from the constructor: one added without a value here fails the first assertion of the fork test.
_NOT_DEFAULT = {
    "model": "chars",
    "version": 2,
    "state": _STATE,
    "bidi": True,
    "outputs": ["logits"],
    "state_every": 3,
    "time_major": True,
}
_MADE = {
    Client: _clients,
    Stream: lambda: (Stream(object(), **_NOT_DEFAULT), AsyncStream(object(), **_NOT_DEFAULT)),  # type: ignore[arg-type]
    Generation: lambda: (Generation(object()), AsyncGeneration(object())),
    ThreadCoalescer: _coalescers,
}


def _carried(instance: object) -> dict[str, object]:
    """The public attributes an instance holds, plain values as they are, others by their kind."""
    plain = (str, int, float, bool, bytes, tuple, list, type(None))
    return {
        name: value if isinstance(value, plain) else _as_sync(type(value).__name__)
        for name, value in vars(instance).items()
        if not name.startswith("_")
    }


@pytest.mark.parametrize(("sync", "async_"), PAIRS, ids=_IDS)
def test_the_two_halves_carry_the_same_settings(sync, async_):
    mine, theirs = (_carried(instance) for instance in _MADE[sync]())
    assert mine == theirs, f"{sync.__name__} and {async_.__name__} hold different settings"
    if sync is not Generation:  # a generation holds nothing public but what the server sends back
        assert mine, "the comparison compares something"


def test_the_two_clients_hold_the_same_public_attributes():
    sync, async_ = (_carried(instance) for instance in _clients())
    assert {"stub", "timeout", "metadata", "coalescer"} <= set(sync)
    assert sync["timeout"] == async_["timeout"] == 7.0


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

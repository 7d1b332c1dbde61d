"""Token authentication over the real server: UNAUTHENTICATED without a valid bearer token,
PERMISSION_DENIED outside a token's models, whether or not they exist; nothing outside the scope is
named; health open to probes; reflection guarded; the token file reloaded when it changes."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lstmserve.client import (
    AuthenticationError,
    Client,
    NotFoundError,
    PermissionDeniedError,
    StateMismatchError,
)
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc
from lstmserve.server.errors import StartError
from lstmserve.server.settings import Settings

from ..conftest import CHARS, DIGITS
from ..servers import InProcessServer

ADMIN, CHARS_ONLY, LATER = "admin-token-0123456789", "chars-token-0123456789", "later-token-0123456789"
X, DIGIT = np.ones((1, 3, 5), np.float32), np.ones((1, 8, 8), np.float32)


@pytest.fixture(scope="module")
def secured(repository, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text(f"# who may call what\n{ADMIN}\n{CHARS_ONLY} {CHARS} ghost  # ghost is not served\n")
    server = InProcessServer(Settings(repository=str(repository), auth_tokens=str(tokens))).start()
    server.tokens = tokens
    yield server
    server.stop()


def client(server, token=None) -> Client:
    return Client(server.address, token=token, timeout=10)


def test_calls_without_a_valid_token_are_unauthenticated(secured):
    for token in (None, "not-a-token-at-all-00000"):
        with client(secured, token) as anonymous:
            for call in (lambda: anonymous.infer(CHARS, X), anonymous.models, lambda: anonymous.model(CHARS)):
                with pytest.raises(AuthenticationError):
                    call()
            with pytest.raises(AuthenticationError), anonymous.stream(CHARS, bidi=True) as stream:
                stream.feed(X)
    request = kserve.ModelInferRequest(model_name=CHARS)
    with grpc.insecure_channel(secured.address) as channel, pytest.raises(grpc.RpcError) as caught:
        kserve_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in caught.value.details()


def test_health_is_open_and_reflection_needs_a_token(secured):
    with grpc.insecure_channel(secured.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as caught:
            next(reflect(iter([ask]), timeout=5))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answer = next(reflect(iter([ask]), timeout=5, metadata=(("authorization", f"Bearer {ADMIN}"),)))
        assert "lstmserve.v1.LSTMService" in {s.name for s in answer.list_services_response.service}


def test_a_token_calls_only_its_models_and_sees_no_other(secured):
    with client(secured, ADMIN) as admin:
        digits_state = admin.infer(DIGITS, DIGIT).state
        assert {m.name for m in admin.models()} == {CHARS, DIGITS}
    with client(secured, CHARS_ONLY) as scoped:
        assert scoped.infer(CHARS, X).output.shape == (1, 3, 7)
        assert {m.name for m in scoped.models()} == {CHARS}
        for name in (DIGITS, "no-such-model"):  # served or not: the same answer
            with pytest.raises(PermissionDeniedError) as caught:
                scoped.infer(name, X)
            assert "this token may not call model" in caught.value.details
        with pytest.raises(NotFoundError) as missing:  # in its scope, not served: named models are its own
            scoped.infer("ghost", X)
        assert DIGITS not in missing.value.details and CHARS in missing.value.details
        with pytest.raises(StateMismatchError) as foreign:  # a state from a model outside the scope
            scoped.infer(CHARS, X, state=digits_state)
        assert DIGITS not in foreign.value.details and "a model not served here" in foreign.value.details
    metadata = (("authorization", f"Bearer {CHARS_ONLY}"),)
    with grpc.insecure_channel(secured.address) as channel:
        stub = kserve_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelMetadata(kserve.ModelMetadataRequest(name=DIGITS), timeout=5, metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_token_file_is_read_again_when_it_changes(secured):
    with client(secured, LATER) as later, pytest.raises(AuthenticationError):
        later.infer(CHARS, X)
    before = secured.tokens.read_text()
    try:
        secured.tokens.write_text(f"{ADMIN}\n{LATER} {CHARS}\n")
        time.sleep(1.2)  # the file is looked at no more than once a second
        with client(secured, LATER) as later:
            assert later.infer(CHARS, X).output.shape == (1, 3, 7)
        with client(secured, CHARS_ONLY) as dropped, pytest.raises(AuthenticationError):
            dropped.infer(CHARS, X)
        secured.tokens.write_text("short\n")  # unusable: the tokens loaded stay
        time.sleep(1.2)
        with client(secured, LATER) as later:
            assert later.infer(CHARS, X).output.shape == (1, 3, 7)
    finally:
        secured.tokens.write_text(before)
        time.sleep(1.2)


def test_a_token_file_with_a_short_token_stops_the_start(repository, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("abc\n")
    from lstmserve.server.auth import Tokens

    with pytest.raises(StartError, match="a token of 3 characters; use 16 or more"):
        Tokens(str(tokens))

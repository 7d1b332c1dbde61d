import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ..conftest import CHARS, DIGITS


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(server.address) as opened:
        yield opened


@pytest.mark.parametrize(
    "service", ["", "lstmserve.v1.LSTMService", "inference.GRPCInferenceService", DIGITS, CHARS]
)
def test_health_serving_overall_and_per_model(channel, service):
    stub = health_pb2_grpc.HealthStub(channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_health_names_the_device_the_models_run_on(channel):
    """A GPU pod's readiness probe asks for device/cuda: a server that serves on the CPU says no."""
    stub = health_pb2_grpc.HealthStub(channel)
    statuses = {
        device: stub.Check(health_pb2.HealthCheckRequest(service=f"device/{device}"), timeout=5).status
        for device in ("cpu", "cuda")
    }
    assert statuses == {
        "cpu": health_pb2.HealthCheckResponse.SERVING,
        "cuda": health_pb2.HealthCheckResponse.NOT_SERVING,
    }


def test_health_of_an_unknown_model_is_not_found(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    response = next(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {service.name for service in response.list_services_response.service}
    assert {"lstmserve.v1.LSTMService", "inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names

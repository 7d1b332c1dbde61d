import json
import subprocess
import sys

from ..conftest import REPO


def test_checked_in_stubs_match_the_proto_sources():
    done = subprocess.run(
        [sys.executable, str(REPO / "proto" / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_stubs_import_as_part_of_the_package():
    from lstmserve.proto.v1 import lstmserve_pb2, lstmserve_pb2_grpc

    assert lstmserve_pb2.DESCRIPTOR.services_by_name["LSTMService"].full_name == "lstmserve.v1.LSTMService"
    assert hasattr(lstmserve_pb2_grpc, "LSTMServiceStub")


def fields_of(module: str) -> dict:
    """Every field of every message in a stub module's `inference` package: (number, type, label)."""
    code = f"""
import json, sys
import {module} as stubs

def walk(message, into):
    for field in message.fields:
        into[message.full_name + "." + field.name] = [field.number, field.type, field.is_repeated]
    for nested in message.nested_types:
        walk(nested, into)

found = {{}}
for message in stubs.DESCRIPTOR.message_types_by_name.values():
    walk(message, found)
methods = {{m.name: [m.input_type.full_name, m.output_type.full_name]
           for m in stubs.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods}}
print(json.dumps({{"fields": found, "methods": methods}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_kserve_messages_match_a_third_party_client_field_for_field():
    """Our inference.* against tritonclient's own compiled copy of the protocol (each in its own
    process: one process cannot hold both). Every RPC and field we define is theirs, same number."""
    ours = fields_of("lstmserve.proto.inference.grpc_service_pb2")
    theirs = fields_of("tritonclient.grpc.service_pb2")
    assert set(ours["methods"]) == {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    }
    for method, types in ours["methods"].items():
        assert theirs["methods"][method] == types, method
    assert len(ours["fields"]) > 40
    for field, shape in ours["fields"].items():
        assert theirs["fields"].get(field) == shape, field


def test_the_wire_limits_are_the_shared_ones_field_for_field():
    """ModelInfo.limits and lstmserve.limits.RequestLimits (which the client fills from it by name, and
    whose defaults the server's settings take) hold the same names, in the same order."""
    from dataclasses import fields

    from lstmserve.limits import RequestLimits
    from lstmserve.proto.v1 import lstmserve_pb2

    wire = [field.name for field in lstmserve_pb2.Limits.DESCRIPTOR.fields]
    assert wire == [field.name for field in fields(RequestLimits)]

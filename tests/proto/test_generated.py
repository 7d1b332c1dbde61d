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

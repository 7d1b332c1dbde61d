"""lstmserve.machine: what .ci/run prints first, so a failure on another CPU can be read."""

import subprocess
import sys

import onnxruntime

from lstmserve import machine


def test_each_cpu_kind_is_named_with_whether_its_int8_sums_saturate():
    assert machine.int8_path({"avx2", "avx512f", "avx512bw", "avx512_vnni"}).startswith("AVX-512 VNNI")
    assert machine.int8_path({"avx2", "avx_vnni"}).startswith("AVX-VNNI")
    assert "saturating" in machine.int8_path({"avx2", "avx512f", "avx512bw"})  # Skylake-SP: no VNNI
    assert "saturating" in machine.int8_path({"avx2", "fma"})  # AMD Zen 2/3, Haswell
    assert machine.int8_path({"asimd", "asimddp"}).startswith("ARM dot product")
    assert "without VNNI" in machine.int8_path(set())


def test_the_printout_names_this_cpu_its_simd_and_onnxruntime():
    printed = subprocess.run(
        [sys.executable, "-m", "lstmserve.machine"], capture_output=True, text=True, check=True
    ).stdout
    cpu, simd, int8, runtime = printed.splitlines()
    assert cpu.startswith("CPU: ") and machine.cpu_model() in cpu
    assert simd.startswith("SIMD: ") and int8 == f"int8 kernels: {machine.int8_path()}"
    assert runtime == f"onnxruntime {onnxruntime.__version__}"

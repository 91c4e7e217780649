"""The model runtime shared by every model kind: artifact files and their manifest, file hashing,
golden samples and the inference backends (ONNX Runtime, LiteRT).

`vision` (defect models) and `forecasting` (demand models) both build on this package; it knows
nothing about images or sales.
"""

from smartstock.runtime.artifact import (MANIFEST_NAME, Artifact, Parity, canonical_bytes, find_artifact,
                                         load_manifest_as, manifest_path_for, parse_manifest_as, verify_artifact,
                                         write_manifest_file)
from smartstock.runtime.golden import decode_array, encode_array
from smartstock.runtime.hashing import file_sha256

__all__ = ["MANIFEST_NAME", "Artifact", "Parity", "canonical_bytes", "decode_array", "encode_array", "file_sha256",
           "find_artifact", "load_manifest_as", "manifest_path_for", "parse_manifest_as", "verify_artifact",
           "write_manifest_file"]

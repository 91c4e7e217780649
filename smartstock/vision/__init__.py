"""Defect classification on the device: shared preprocessing, manifest, ONNX/LiteRT backends, classifier.

No TensorFlow here: training/ imports this package, never the reverse.
"""

from smartstock.vision.classifier import Classification, DefectClassifier, default_model_path
from smartstock.vision.manifest import Manifest, load_manifest, run_golden, verify_artifact
from smartstock.vision.preprocess import InputSpec, preprocess

__all__ = ["Classification", "DefectClassifier", "InputSpec", "Manifest", "default_model_path", "load_manifest",
           "preprocess", "run_golden", "verify_artifact"]

"""ser-edge on-device runtime: numpy MFCC + ONNX Runtime / LiteRT / pure-numpy inference.

Imports numpy and the standard library only; inference engines load when a model needs them.

    from ser_edge.runtime import Recognizer
    rec = Recognizer.load("model.int8.onnx")
    print(rec.predict("clip.wav").label)
"""

from .audio import AudioError, load_audio, read_wav
from .backends import Backend, BackendError, load_backend
from .errors import SerEdgeError
from .features import FeatureConfig, FeatureConfigError, extract
from .metadata import MetadataError, ModelMetadata, SelfTest
from .recognizer import Prediction, Recognizer, default_model_path
from .stream import Stream

__all__ = [
    "AudioError", "Backend", "BackendError", "FeatureConfig", "FeatureConfigError", "MetadataError",
    "ModelMetadata", "Prediction", "Recognizer", "SelfTest", "SerEdgeError", "Stream",
    "default_model_path", "extract", "load_audio", "load_backend", "read_wav",
]

"""SmartStock: the library behind the edge inspection appliance.

Pure library: no TensorFlow, no threads of its own, no camera. The device runtime lives in
``edge`` and the training code in ``training``.
"""

__version__ = "0.1.0"

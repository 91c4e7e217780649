"""Training and export (TensorFlow/Keras live here and nowhere else)."""

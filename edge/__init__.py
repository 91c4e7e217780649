"""The device runtime: capture, inspection loop, workers, OTA agent, health. No TensorFlow here."""

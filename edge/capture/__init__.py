"""Frame sources behind one FrameSource interface."""

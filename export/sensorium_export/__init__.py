"""torch -> ONNX export (whole-clip and streaming step graphs) into a model repository."""

"""The gRPC inference server of sensorium-serve (ONNX Runtime behind one scheduler).

Never imports torch: a served model is an ONNX graph plus its manifest.
"""

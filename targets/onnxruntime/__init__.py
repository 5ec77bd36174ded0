"""ONNX Runtime family: the CPU execution provider."""

"""ONNX: the conventions edgeport's .onnx files follow, read by the converter and by ONNX Runtime."""

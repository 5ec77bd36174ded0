"""ONNX converter family: `onnx`, `onnx:fp16`, `onnx:int8`, through tf2onnx and onnxruntime's offline optimizer."""

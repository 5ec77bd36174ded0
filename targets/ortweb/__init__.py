"""edgeport.targets.ortweb: ONNX Runtime Web (onnxruntime-web) running .onnx in headless Chromium (`ort-web`)."""

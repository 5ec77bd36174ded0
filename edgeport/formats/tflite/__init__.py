"""TFLite flatbuffers: reading them, quantization parameters, and the TFLite conversion call."""

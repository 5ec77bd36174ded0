"""TFLite Micro runtime family: TFLM's reference kernels on the host."""

"""TFLite Micro: the kernels the installed tflite-micro registers, and the tensor arena search."""

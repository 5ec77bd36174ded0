"""TFLite converter family: `tflite`, `tflite:fp16`, `tflite:dynamic`, `tflite:int8`, `tflite:int16x8`."""

"""TFLite Micro converter family: `tflm` (int8 .tflite, C sources, op resolver, device budgets)."""

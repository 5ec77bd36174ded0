"""TF.js converter family: `tfjs`, `tfjs:fp16`, `tfjs:uint8`, `tfjs:uint16` (edgeport's own graph-model emitter)."""

"""edgeport.targets.litertjs: LiteRT.js (@litertjs/core) running .tflite in headless Chromium (`litertjs-browser`)."""

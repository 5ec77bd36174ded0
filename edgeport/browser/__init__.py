"""What every runtime in headless Chromium shares, whatever its format: Debian's Chromium started through
Playwright (`chromium`), the page server (`server`), tensors as base64 records (`wire`), the JavaScript timing
protocol (`protocol.js`, also the TF.js Node runner's), and the pinned npm packages of the web runtimes that
are not TF.js (`npm`: @litertjs/core, onnxruntime-web; package.json + package-lock.json beside it).

A core package, not `edgeport.formats.<format>`: tfjs-browser, litertjs-browser and ort-web run three formats,
and a runtime family never imports another's package. May import edgeport.data, errors, contracts, checks
(latency: VmHWM), run (isolation, requirements); never a plug-in."""

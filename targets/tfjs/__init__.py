"""TF.js runtime family: Node.js (`tfjs-node`) and headless Chromium (`tfjs-browser`), and their JS."""

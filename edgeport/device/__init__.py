"""Devices: each artifact checked and benchmarked on the boards it ships to, over the user's own OpenSSH.

`config` (the [device.NAME] tables, --device), `ssh` (the multiplexed connection), `remote` (the per-run folder
on a device), `runner` (the one self-contained file that runs there: stdlib, numpy and the runtime, no
edgeport, no TensorFlow), `stage` (the devices step of the plan, after bench), `doctor` (`edgeport doctor
--device`).

May import data, errors, checks, report and run (the stage reads the run's records); nothing imports it but
run/request (the Device record), run/pipeline (the stage) and cli."""

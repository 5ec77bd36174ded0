"""What every target is judged by: accuracy metrics, the timing protocol (timing) and its statistics
(latency), budgets, task accuracy, the per-layer comparison.

Owns the numbers behind every verdict. May import edgeport.data, edgeport.errors, model.samples (reading
an .npz), report.wording; never run/, cli/, fleet/ or a plug-in."""

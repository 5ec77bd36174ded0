"""What a converter and a runtime of one format both read (never one importing the other).

One package per format. May import edgeport.data, edgeport.errors, model/ (the frozen graph), checks/
(layer records), report.wording, run.capture and the format's own libraries; never a plug-in
(converters/, targets/), cli/ or fleet/."""

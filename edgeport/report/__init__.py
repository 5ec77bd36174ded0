"""What a run leaves behind: report.json/junit/summary, report.html, baseline comparison, history, and the
wording of every number a person reads.

May import edgeport.errors and checks/ (the records it prints); never run/, model/, cli/ or a plug-in."""

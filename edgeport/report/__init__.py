"""What a run leaves behind: report.json/junit/summary, report.html, baseline comparison, history."""

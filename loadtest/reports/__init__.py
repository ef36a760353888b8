"""Reports: every command's report.html and run.json (page.py), charts (svg.py), tables, the index of runs."""

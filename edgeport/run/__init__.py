"""One run, stage by stage: pipeline (the plan) calls load, reference, bench (baseline), convert, judge
(check, then refit when a check fails), bench, result; request, options and registry build what it runs;
isolation and lanes hold the processes and threads it runs them in.

May import every core package; plug-ins only through the registry (entry points), never by module."""

"""End to end: real functions-framework processes, the demo, the example subscribers, the chaos soak."""

"""Tables, charts and diffs over result files."""

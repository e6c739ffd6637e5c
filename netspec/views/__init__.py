"""Views of a network and a run: diagrams, diffs, the HTML run report."""

"""The checked network (every layer's shapes, parameters, MACs and memory) and what check reports of it."""

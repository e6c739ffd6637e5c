"""Code generation shared by the backends: the backend protocol, strict templates, and what
differs between the uses of a module."""

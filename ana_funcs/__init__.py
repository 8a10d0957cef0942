"""Analysis functions: DetObjectFunc subclasses, one module each."""

"""Steps more than one use case takes; the use cases themselves never import each other."""

"""The network side: a catalog's model loaded as a `Pathway` (models), which of its layers plays
pool5/fc6/fc7/fc8 per family (families, torch-free), the masked pathway itself (pathway), and the
cached activations of a class's images (features)."""

"""Data: synthetic generation, the Ray-free builder, the h5 block layout and the loader."""

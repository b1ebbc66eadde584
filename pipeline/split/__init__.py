"""Spatial test designs: blocks, stratified test / validation / cross-validation draws, buffers."""
